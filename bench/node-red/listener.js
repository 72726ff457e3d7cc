// A minimal FHIR listener for bench/node-red/run: answers a transaction Bundle (vitalsd) with a
// transaction-response and a single Observation POST (Node-RED) with 201, counting every
// Observation identifier it receives. GET /count answers {"stored":N,"dup":D,"first":ms,"last":ms}.
// Usage: node listener.js PORT
'use strict';
const http = require('http');
const port = Number(process.argv[2] || 0);
const seen = new Map();
let dup = 0, first = 0, last = 0;
function count(obs) {
  const id = obs && obs.identifier && obs.identifier[0] && obs.identifier[0].value;
  if (!id) return;
  const n = seen.get(id) || 0;
  if (n > 0) dup++;
  seen.set(id, n + 1);
  const now = Date.now();
  if (!first) first = now;
  last = now;
}
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/count') {
    res.writeHead(200, {'content-type': 'application/json'});
    res.end(JSON.stringify({stored: seen.size, dup, first, last}));
    return;
  }
  if (req.method === 'GET' && req.url.endsWith('/metadata')) {
    res.writeHead(200, {'content-type': 'application/fhir+json'});
    res.end('{"resourceType":"CapabilityStatement","status":"active","fhirVersion":"4.0.1"}');
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body;
    try { body = JSON.parse(Buffer.concat(chunks)); } catch (e) { res.writeHead(400); res.end(); return; }
    if (body.resourceType === 'Bundle') {
      const entries = body.entry || [];
      entries.forEach((e) => count(e.resource));
      res.writeHead(200, {'content-type': 'application/fhir+json'});
      res.end(JSON.stringify({resourceType: 'Bundle', type: 'transaction-response',
        entry: entries.map(() => ({response: {status: '201 Created'}}))}));
    } else {
      count(body);
      res.writeHead(201, {'content-type': 'application/fhir+json', location: 'Observation/1/_history/1'});
      res.end();
    }
  });
});
server.keepAliveTimeout = 60000;
server.listen(port, '127.0.0.1', () => console.log('listening ' + server.address().port));
