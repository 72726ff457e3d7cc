// Node-RED settings for bench/mqtt-fhir --node-red: no editor auth needed (loopback only), the
// flow in flow.json, Node's crypto for the function node's identifiers.
module.exports = {
  uiHost: '127.0.0.1',
  uiPort: Number(process.env.BENCH_NODE_RED_PORT || 1880),
  flowFile: 'flow.json',
  credentialSecret: false,
  functionGlobalContext: { crypto: require('crypto') },
  logging: { console: { level: 'info', metrics: false, audit: false } },
};
