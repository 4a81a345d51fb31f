// node upload.mjs ENDPOINT FILE OPTIONS_JSON
// Uploads FILE (read into a Buffer) with the given tus.Upload options and prints
// {url, requests, responses} as JSON.
import { readFileSync } from "node:fs";
import { done, fail, finish, recording, tus } from "./record.mjs";

const [endpoint, file, optionsJson] = process.argv.slice(2);
const log = { requests: [], responses: [] };
const upload = new tus.Upload(readFileSync(file), {
  endpoint,
  retryDelays: null, // surface any error at once
  ...recording(log),
  ...JSON.parse(optionsJson || "{}"),
});
finish(upload)
  .then((url) => done({ url, ...log }))
  .catch(fail);
