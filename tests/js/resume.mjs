// node resume.mjs ENDPOINT FILE STORAGE_JSON_PATH CHUNK_SIZE [PROTOCOL]
// (PROTOCOL: tus-js-client's `protocol` option, e.g. 'ietf-draft-05'; default tus 1.0)
// 1. uploads FILE (an fs.ReadStream) in CHUNK_SIZE requests and aborts once
//    more than 30% has been sent;
// 2. a NEW Upload finds the stored URL (FileUrlStorage over a JSON file) and
//    resumes it with findPreviousUploads() + resumeFromPreviousUpload().
// Prints {firstUrl, abortedAt, previous, url, first: {requests, responses}, second: {...}}.
import { createReadStream } from "node:fs";
import { basename } from "node:path";
import { done, fail, finish, recording, tus } from "./record.mjs";

const [endpoint, file, storagePath, chunkSize, protocol] = process.argv.slice(2);

function options(log) {
  return {
    endpoint,
    ...(protocol ? { protocol } : {}),
    chunkSize: Number(chunkSize),
    metadata: { filename: basename(file), filetype: "application/octet-stream" },
    urlStorage: new tus.FileUrlStorage(storagePath),
    retryDelays: null,
    ...recording(log),
  };
}

function uploadUntilAborted(log) {
  return new Promise((resolve, reject) => {
    let aborting = false;
    const upload = new tus.Upload(createReadStream(file), {
      ...options(log),
      onProgress(sent, total) {
        if (!aborting && sent / total > 0.3) {
          aborting = true;
          upload.abort().then(() => resolve({ url: upload.url, abortedAt: sent }), reject);
        }
      },
      onSuccess: () => reject(new Error("the first upload finished before it was aborted")),
      onError: reject,
    });
    upload.start();
  });
}

async function main() {
  const first = { requests: [], responses: [] };
  const aborted = await uploadUntilAborted(first);

  const second = { requests: [], responses: [] };
  const upload = new tus.Upload(createReadStream(file), options(second));
  const previous = await upload.findPreviousUploads();
  if (previous.length === 0) throw new Error("no previous upload stored");
  upload.resumeFromPreviousUpload(previous[0]);
  const url = await finish(upload);
  done({
    firstUrl: aborted.url,
    abortedAt: aborted.abortedAt,
    previous: previous.map((p) => p.uploadUrl),
    url,
    first,
    second,
  });
}

main().catch(fail);
