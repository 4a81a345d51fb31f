// Shared by the tus-js-client scripts (tus 1.0 and the IETF draft): run an Upload to
// completion while recording every request it sends and every response it gets.
import * as tus from "tus-js-client";

export { tus };

const REQUEST_HEADERS = [
  "Upload-Offset",
  "Upload-Length",
  "Upload-Concat",
  "X-HTTP-Method-Override",
  "Content-Type",
  "Tus-Resumable",
  "Upload-Draft-Interop-Version",
  "Upload-Complete",
];
const RESPONSE_HEADERS = ["Upload-Offset", "Upload-Complete", "Upload-Length", "Upload-Limit", "Location"];

/** Options that record requests/responses into `log` ({requests: [], responses: []}). */
export function recording(log) {
  return {
    onBeforeRequest(req) {
      const headers = {};
      for (const name of REQUEST_HEADERS) {
        const value = req.getHeader(name);
        if (value !== undefined) headers[name] = String(value);
      }
      log.requests.push({ method: req.getMethod(), url: req.getURL(), headers });
    },
    onAfterResponse(req, res) {
      const headers = {};
      for (const name of RESPONSE_HEADERS) {
        const value = res.getHeader(name);
        if (value !== undefined && value !== null) headers[name] = String(value);
      }
      log.responses.push({
        method: req.getMethod(),
        url: req.getURL(),
        status: res.getStatus(),
        offset: res.getHeader("Upload-Offset") ?? null,
        headers,
      });
    },
  };
}

/** Start `upload` and resolve with its URL on success; reject on error. */
export function finish(upload) {
  return new Promise((resolve, reject) => {
    upload.options.onSuccess = () => resolve(upload.url);
    upload.options.onError = reject;
    upload.start();
  });
}

/** Print the result as one JSON line and exit (keep-alive sockets would hold the process). */
export function done(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

export function fail(error) {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
}
