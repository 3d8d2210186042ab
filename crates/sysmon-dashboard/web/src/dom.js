// DOM helpers. Every string that comes from an agent (machine ids, host names,
// process names, mount points) is hostile: it only ever reaches the page
// through textContent or setAttribute, never through innerHTML.

/** Creates an element: h('td', {class: 'num', title: x}, child, 'text', ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Sets text only when it changed (keeps the DOM quiet under live updates). */
export function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];

/** 1234567 -> "1.2 MB" (decimal units). */
export function fmtBytes(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  let u = 0;
  let x = Math.abs(v);
  while (x >= 1000 && u < UNITS.length - 1) { x /= 1000; u++; }
  const s = x >= 100 || u === 0 ? x.toFixed(0) : x.toFixed(1);
  return (v < 0 ? '-' : '') + s + ' ' + UNITS[u];
}

/** Bytes per second -> "1.2 MB/s". */
export function fmtRate(v) {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : fmtBytes(v) + '/s';
}

/** 12.345 -> "12.3 %". */
export function fmtPct(v) {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(1) + ' %';
}

/** A plain number with `d` decimals. */
export function fmtNum(v, d = 2) {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(d);
}

/** Seconds -> "3 s ago", "5 min ago", "2 h ago", "3 d ago". */
export function fmtAgo(secs) {
  if (!Number.isFinite(secs)) return '–';
  if (secs < 0) secs = 0;
  if (secs < 90) return Math.round(secs) + ' s ago';
  if (secs < 5400) return Math.round(secs / 60) + ' min ago';
  if (secs < 172800) return Math.round(secs / 3600) + ' h ago';
  return Math.round(secs / 86400) + ' d ago';
}

/** Seconds -> "3 d 4 h". */
export function fmtDuration(secs) {
  if (!Number.isFinite(secs)) return '–';
  const d = Math.floor(secs / 86400);
  const hh = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  if (d > 0) return `${d} d ${hh} h`;
  if (hh > 0) return `${hh} h ${m} min`;
  return `${m} min`;
}

/** Epoch seconds -> local "YYYY-MM-DD HH:MM:SS". */
export function fmtTime(ts) {
  if (!Number.isFinite(ts)) return '–';
  const d = new Date(ts * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A percentage meter: bar plus number. */
export function meter(pct) {
  const i = h('i');
  const label = h('span');
  const el = h('div', { class: 'meter' }, h('div', { class: 'bar' }, i), label);
  updateMeter(el, pct);
  return el;
}

/** Updates a meter made by meter(). */
export function updateMeter(el, pct) {
  const i = el.querySelector('i');
  const v = Number.isFinite(pct) ? Math.max(0, Math.min(100, pct)) : 0;
  i.style.width = v.toFixed(1) + '%';
  i.className = pct >= 90 ? 'bad' : pct >= 75 ? 'warn' : '';
  setText(el.querySelector('span'), fmtPct(pct));
}

/** The empty state of a panel. */
export function empty(title, text) {
  return h('div', { class: 'empty' }, h('strong', null, title), text);
}

/** A status badge: online / stale / offline. */
export function statusBadge(status) {
  const s = ['online', 'stale', 'offline'].includes(status) ? status : 'offline';
  return h('span', { class: 'status ' + s, 'data-status': s }, s);
}
