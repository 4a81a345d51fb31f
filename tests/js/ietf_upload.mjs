// node ietf_upload.mjs ENDPOINT FILE PROTOCOL OPTIONS_JSON
// Uploads FILE (read into a Buffer) with tus-js-client speaking PROTOCOL
// ('ietf-draft-03' = interop 5, 'ietf-draft-05' = interop 6) and the given
// tus.Upload options; prints {url, requests, responses} as JSON.
import { readFileSync } from "node:fs";
import { done, fail, finish, recording, tus } from "./ietf_record.mjs";

const [endpoint, file, protocol, optionsJson] = process.argv.slice(2);
const log = { requests: [], responses: [] };
const upload = new tus.Upload(readFileSync(file), {
  endpoint,
  protocol,
  retryDelays: null, // surface any error at once
  ...recording(log),
  ...JSON.parse(optionsJson || "{}"),
});
finish(upload)
  .then((url) => done({ url, ...log }))
  .catch(fail);
