// REST calls to the hub, same origin, with the session cookie.

/** A refused request: HTTP status, the API's error code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Fired on `window` when a request finds the session gone (401). */
export const SESSION_ENDED = 'kommutator:session-ended';

/** `method path` with an optional JSON body; resolves to the parsed JSON (or null). */
export async function api(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'network', String(e && e.message || e));
  }
  const text = await res.text();
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch (_) { json = null; }
  }
  if (!res.ok) {
    const err = (json && json.error) || {};
    const e = new ApiError(res.status, err.code || `http_${res.status}`, err.message || res.statusText);
    e.field = err.field || null;
    if (res.status === 401 && !path.endsWith('/auth/login')) {
      window.dispatchEvent(new CustomEvent(SESSION_ENDED));
    }
    throw e;
  }
  return json;
}

/** Every item of a paged list (`items` + `next_cursor`), at most `max`. */
export async function all(path, max = 2000) {
  const out = [];
  let cursor = null;
  const sep = path.includes('?') ? '&' : '?';
  do {
    const page = await api('GET', `${path}${sep}limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    out.push(...(page.items || []));
    cursor = page.next_cursor;
  } while (cursor && out.length < max);
  return out;
}
