// Fetching from the sysmon API. Errors carry the server's JSON message.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** GET a JSON endpoint; `params` become the query string. */
export async function get(path, params, signal) {
  const qs = params ? '?' + new URLSearchParams(params).toString() : '';
  const r = await fetch(path + qs, { headers: { Accept: 'application/json' }, credentials: 'same-origin', signal });
  if (r.status === 401) {
    window.location.href = '/login';
    throw new ApiError(401, { message: 'login required' });
  }
  let body = null;
  try { body = await r.json(); } catch { body = null; }
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

/** The URL path segment for a machine id (ids are hostile text: always encoded). */
export function machinePath(id) {
  return '/api/machines/' + encodeURIComponent(id);
}
