// Talking to the avatar HTTP API from the page: the optional key, JSON and multipart requests,
// errors in the server's one shape, results as blobs and the progress stream.
import { SseParser } from './sse.js';

const KEY_NAME = 'avatar.apiKey';

/** The key the user gave in this tab, or '' (storage can be unavailable: then there is none). */
export function getApiKey() {
  try {
    return sessionStorage.getItem(KEY_NAME) ?? '';
  } catch {
    return '';
  }
}

export function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_NAME, key);
    else sessionStorage.removeItem(KEY_NAME);
  } catch {
    // private modes may refuse storage; the key then lasts until the page reloads
  }
  memoryKey = key;
}

let memoryKey = '';
const currentKey = () => getApiKey() || memoryKey;

/** An error answer: code, message and hint from the body; reasons when the face check said no. */
export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `the server answered ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = error?.code ?? 'AVATAR_ERR_HTTP';
    this.hint = error?.hint ?? '';
    this.reasons = Array.isArray(error?.reasons) ? error.reasons : [];
  }
}

/** Listeners told when the server wants a key (401), so the page can ask for one. */
const unauthorizedListeners = new Set();
export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

function headers(extra = {}) {
  const h = new Headers(extra);
  const key = currentKey();
  if (key) h.set('authorization', `Bearer ${key}`);
  return h;
}

async function toError(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    body = undefined;
  }
  const error = new ApiError(response.status, body?.error);
  if (response.status === 401) for (const listener of unauthorizedListeners) listener(error);
  return error;
}

async function send(method, path, { json, form, signal } = {}) {
  const init = { method, headers: headers({ accept: 'application/json' }), signal };
  if (json !== undefined) {
    init.headers.set('content-type', 'application/json');
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form; // the browser writes the multipart boundary
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (cause) {
    if (cause?.name === 'AbortError') throw cause;
    throw new ApiError(0, { code: 'AVATAR_ERR_HTTP_OFFLINE', message: 'The server cannot be reached.', hint: 'Check that "avatar serve" is running, then try again.' });
  }
  if (!response.ok) throw await toError(response);
  if (response.status === 204) return undefined;
  return response.json();
}

export const api = {
  get: (path, options) => send('GET', path, options),
  post: (path, json, options) => send('POST', path, { ...options, json }),
  upload: (path, form, options) => send('POST', path, { ...options, form }),
  delete: (path, options) => send('DELETE', path, options),
};

/** True when requests carry a key; results are then fetched as blobs, since a plain link cannot send it. */
export const hasApiKey = () => currentKey() !== '';

/** A file the server sends (a result), read whole. */
export async function fetchBlob(path, { signal } = {}) {
  const response = await fetch(path, { headers: headers(), signal });
  if (!response.ok) throw await toError(response);
  return response.blob();
}

/**
 * Reads /v1/jobs/:id/events until the server ends it. Each event goes to onEvent as
 * (name, parsed data). Resolves with the job of the `end` event, or null when the stream broke off
 * before the end (the caller then looks at the job and reconnects).
 */
export async function streamEvents(path, onEvent, { signal } = {}) {
  const response = await fetch(path, { headers: headers({ accept: 'text/event-stream' }), signal, cache: 'no-store' });
  if (!response.ok) throw await toError(response);
  if (!response.body) return null;
  let finalJob = null;
  const parser = new SseParser(({ event, data }) => {
    let value;
    try {
      value = JSON.parse(data);
    } catch {
      return;
    }
    if (event === 'end') finalJob = value;
    onEvent(event, value);
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value);
    }
  } catch (cause) {
    if (cause?.name === 'AbortError') throw cause;
    return finalJob; // the connection dropped: null unless the end had already come
  } finally {
    parser.end();
    reader.releaseLock();
  }
  return finalJob;
}
