// tusd-py demo page: Uppy Dashboard + @uppy/tus against a tusd-py server.
//
// Query string:
//   ?endpoint=http://127.0.0.1:8080/files/   the tus creation URL (default below)
//   &chunkSize=1048576                       bytes per PATCH (default: whole file in one PATCH)
//   &autoProceed=1                           start uploading as soon as a file is added
//
// For tests: `window.uppy` is the Uppy instance and `window.events` records
// upload-progress, upload-success (with the upload URL), upload-error, error,
// restriction-failed and complete events as plain objects.
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus from '@uppy/tus'

import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'
import './demo.css'

const DEFAULT_ENDPOINT = 'http://127.0.0.1:8080/files/'
const FINISHED_KEY = 'tusd-py-demo:finished'

const params = new URLSearchParams(window.location.search)
const endpoint = params.get('endpoint') || DEFAULT_ENDPOINT
const chunkSizeParam = Number.parseInt(params.get('chunkSize') || '', 10)
const chunkSize = Number.isFinite(chunkSizeParam) && chunkSizeParam > 0 ? chunkSizeParam : Infinity
const autoProceed = ['1', 'true', 'yes'].includes((params.get('autoProceed') || '').toLowerCase())

const events = []
window.events = events
const record = (type, fields) => events.push({ type, time: Date.now(), ...fields })

const uppy = new Uppy({ autoProceed, debug: params.has('debug') })
  .use(Dashboard, {
    inline: true,
    target: '#uppy',
    width: '100%',
    height: 420,
    // Uppy 4+ renamed `showProgressDetails: true` to `hideProgressDetails: false`.
    hideProgressDetails: false,
    hidePauseResumeButton: false,
    showLinkToFileUploadResult: true,
    proudlyDisplayPoweredByUppy: false,
    note: 'Paused or interrupted? Reload, add the same file again, and the upload resumes.',
  })
  .use(Tus, {
    endpoint,
    chunkSize,
    // tus-js-client keeps `tus::<fingerprint>::<n>` → upload URL in localStorage,
    // so the same file added after a reload resumes where it stopped.
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    retryDelays: [0, 1000, 3000, 5000],
  })
window.uppy = uppy

// ---- the finished-uploads list (kept in localStorage so it survives reloads)

const finishedList = document.getElementById('finished')
const finishedEmpty = document.getElementById('finished-empty')

function loadFinished() {
  try {
    const items = JSON.parse(localStorage.getItem(FINISHED_KEY) || '[]')
    return Array.isArray(items) ? items : []
  } catch {
    return []
  }
}

function saveFinished(items) {
  try {
    localStorage.setItem(FINISHED_KEY, JSON.stringify(items.slice(0, 50)))
  } catch {
    // Storage full or disabled: the list just is not kept.
  }
}

function formatSize(bytes) {
  if (!Number.isFinite(bytes)) return ''
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`
}

function renderFinished() {
  const items = loadFinished()
  finishedList.replaceChildren(
    ...items.map((item) => {
      const li = document.createElement('li')
      const link = document.createElement('a')
      link.href = item.url
      link.textContent = item.name
      link.target = '_blank'
      link.rel = 'noopener'
      const size = document.createElement('span')
      size.className = 'size'
      size.textContent = ` ${formatSize(item.size)}`
      li.append(link, size)
      return li
    }),
  )
  finishedEmpty.hidden = items.length > 0
}

document.getElementById('finished-clear').addEventListener('click', () => {
  saveFinished([])
  renderFinished()
})

// ---- uploads this browser can still resume (tus-js-client's URL storage)

function renderResumable() {
  const box = document.getElementById('resumable')
  let count = 0
  try {
    for (let i = 0; i < localStorage.length; i += 1) {
      const key = localStorage.key(i)
      if (key?.startsWith('tus::') && key.includes(endpoint)) count += 1
    }
  } catch {
    count = 0
  }
  box.hidden = count === 0
  box.textContent =
    count === 1
      ? '1 unfinished upload can be resumed: add the same file again.'
      : `${count} unfinished uploads can be resumed: add the same files again.`
}

// ---- events

uppy.on('upload-progress', (file, progress) => {
  if (!file) return
  record('upload-progress', {
    fileId: file.id,
    bytesUploaded: progress.bytesUploaded,
    bytesTotal: progress.bytesTotal,
  })
})

uppy.on('upload-success', (file, response) => {
  const url = response?.uploadURL
  record('upload-success', { fileId: file?.id, name: file?.name, size: file?.size, url })
  if (url) {
    saveFinished([{ name: file.name, size: file.size, url }, ...loadFinished().filter((i) => i.url !== url)])
    renderFinished()
  }
  renderResumable()
})

uppy.on('upload-error', (file, error, response) => {
  record('upload-error', {
    fileId: file?.id,
    message: String(error?.message || error),
    status: response?.status,
  })
})

uppy.on('error', (error) => record('error', { message: String(error?.message || error) }))
uppy.on('restriction-failed', (file, error) =>
  record('restriction-failed', { fileId: file?.id, message: String(error?.message || error) }),
)
uppy.on('upload', () => renderResumable())
uppy.on('upload-pause', (fileId, isPaused) => {
  record('upload-pause', { fileId, isPaused })
  renderResumable()
})
uppy.on('complete', (result) =>
  record('complete', {
    successful: (result.successful || []).map((f) => f.id),
    failed: (result.failed || []).map((f) => f.id),
  }),
)

document.getElementById('endpoint').textContent = endpoint
document.getElementById('chunk-size').textContent =
  chunkSize === Infinity ? 'whole file' : formatSize(chunkSize)
renderFinished()
renderResumable()
window.demoReady = true
