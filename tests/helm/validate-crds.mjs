// Validates Kubernetes objects of CRD kinds with the validators the @kubernetes-models
// packages compile from the CRDs' own schemas (types, enums, patterns, limits).
//
//   node validate-crds.mjs <node_modules dir> < objects.json
//
// Reads a JSON array of objects; writes a JSON array with, for each object, null when
// it is valid or the validator's message.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const PACKAGES = {
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

const modules = process.argv[2];
const results = [];
for (const object of JSON.parse(readFileSync(0, "utf8"))) {
  const [group, version] = object.apiVersion.split("/");
  const pkg = PACKAGES[group];
  if (pkg === undefined) {
    results.push(`no schema for ${object.apiVersion}`);
    continue;
  }
  const file = `${modules}/${pkg}/${group}/${version}/${object.kind}.js`;
  const model = (await import(pathToFileURL(file).href))[object.kind];
  try {
    new model(object).validate();
    results.push(null);
  } catch (error) {
    results.push(error.message);
  }
}
process.stdout.write(JSON.stringify(results));
