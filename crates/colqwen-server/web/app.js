// The colqwen web page: search, page viewer with similarity maps, upload, documents. Plain JavaScript over the
// HTTP API (see /openapi.json); images are fetched with the API key and shown as blob: URLs.
'use strict';

const $ = (id) => document.getElementById(id);
const KEY_STORE = 'colqwen-api-key';
const state = { query: '', results: [], urls: [], viewer: null, tokens: null, tokensFor: null };

// ---- API access --------------------------------------------------------------------------------------------

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { Authorization: 'Bearer ' + key } : {};
}

let keyPrompt = null;
function askKey() {
  if (keyPrompt) return keyPrompt;
  keyPrompt = new Promise((resolve) => {
    const dialog = $('key-dialog');
    $('key-input').value = '';
    dialog.addEventListener('close', () => {
      const key = $('key-input').value.trim();
      if (key) sessionStorage.setItem(KEY_STORE, key);
      keyPrompt = null;
      resolve(Boolean(key));
    }, { once: true });
    dialog.showModal();
  });
  return keyPrompt;
}

/** fetch with the key; a 401 asks for the key (up to three times) and retries. */
async function api(path, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    const resp = await fetch(path, { ...opts, headers: { ...(opts.headers || {}), ...authHeaders() } });
    if (resp.status !== 401 || attempt >= 3) return resp;
    sessionStorage.removeItem(KEY_STORE);
    if (!(await askKey())) return resp;
  }
}

/** The message of an API error body (`{"error": {"message", "hint"}}`), never a stack trace. */
async function errorOf(resp) {
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  const e = body && body.error;
  if (e && e.message) return e.message + (e.hint ? ' — ' + e.hint : '');
  return `the server answered ${resp.status} ${resp.statusText}`;
}

async function getJson(path, opts) {
  const resp = await api(path, opts);
  if (!resp.ok) throw new Error(await errorOf(resp));
  return resp.json();
}

async function blobUrl(path) {
  const resp = await api(path);
  if (!resp.ok) throw new Error(await errorOf(resp));
  const url = URL.createObjectURL(await resp.blob());
  state.urls.push(url);
  return url;
}

function say(text) { $('status').textContent = text; }
function messageOf(err) { return err && err.message ? err.message : String(err); }

// ---- search ------------------------------------------------------------------------------------------------

async function search(ev) {
  ev.preventDefault();
  const query = $('query').value.trim();
  if (!query) return;
  const doc = $('doc-filter').value;
  const started = performance.now();
  state.urls.forEach((u) => URL.revokeObjectURL(u));
  state.urls = [];
  const list = $('results');
  list.replaceChildren();
  delete list.dataset.firstResultMs;
  $('search-info').textContent = 'Searching…';
  let body;
  try {
    body = await getJson('/v1/search', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(doc ? { query, k: 24, doc } : { query, k: 24 }),
    });
  } catch (err) {
    $('search-info').textContent = 'Search failed: ' + messageOf(err);
    return;
  }
  state.query = query;
  state.results = body.results;
  $('search-info').textContent = body.results.length
    ? `${body.results.length} pages, best first (${Math.round(body.took_ms)} ms)`
    : 'No pages match: upload documents first, or change the document filter.';
  body.results.forEach((r, i) => {
    const li = document.createElement('li');
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'result';
    btn.dataset.index = String(i);
    const img = document.createElement('img');
    img.alt = `Page ${r.page_number} of ${r.name}`;
    const name = document.createElement('span');
    name.className = 'meta name';
    name.textContent = r.name;
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = `page ${r.page_number} of ${r.page_count} · score ${r.score.toFixed(2)}`;
    btn.append(img, name, meta);
    btn.addEventListener('click', () => openViewer(i));
    li.append(btn);
    list.append(li);
    if (r.preview_url) {
      blobUrl(r.preview_url).then((url) => {
        img.addEventListener('load', () => {
          if (!list.dataset.firstResultMs) list.dataset.firstResultMs = String(Math.round(performance.now() - started));
        }, { once: true });
        img.src = url;
      }).catch((err) => { meta.textContent += ' (no preview: ' + messageOf(err) + ')'; });
    }
  });
}

/** Arrow keys move between results (up/down by a row of the grid), Home/End to the ends. */
function resultKeys(ev) {
  const buttons = [...$('results').querySelectorAll('.result')];
  const at = buttons.indexOf(document.activeElement);
  if (at < 0) return;
  const top = buttons[0].getBoundingClientRect().top;
  const perRow = Math.max(1, buttons.filter((b) => b.getBoundingClientRect().top === top).length);
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: perRow, ArrowUp: -perRow };
  let next = at;
  if (ev.key in moves) next = at + moves[ev.key];
  else if (ev.key === 'Home') next = 0;
  else if (ev.key === 'End') next = buttons.length - 1;
  else return;
  ev.preventDefault();
  buttons[Math.min(buttons.length - 1, Math.max(0, next))].focus();
}

// ---- page viewer -------------------------------------------------------------------------------------------

function openViewer(i) {
  const r = state.results[i];
  state.viewer = { doc_id: r.doc_id, name: r.name, page: r.page_number, pages: r.page_count, token: null, from: i };
  $('overlay-toggle').checked = true;
  $('viewer').showModal();
  showPage();
}

async function loadTokens(v) {
  if (state.tokensFor === state.query && state.tokens) return;
  const q = encodeURIComponent(state.query);
  const body = await getJson(`/v1/pages/${v.doc_id}/${v.page}/similarity?q=${q}&format=json`);
  state.tokens = body.tokens;
  state.tokensFor = state.query;
  renderTokens();
}

function renderTokens() {
  const box = $('token-list');
  box.replaceChildren();
  const v = state.viewer;
  const add = (label, token, title) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.title = title;
    b.setAttribute('aria-pressed', String(v.token === token));
    b.addEventListener('click', () => { v.token = token; renderTokens(); showPage(); });
    box.append(b);
  };
  add('All tokens (max)', null, 'The aggregate map: for each spot, the best match of any query token');
  // The model pads every query with augmentation tokens (`<|endoftext|>` …): they count in the aggregate map
  // but mean nothing on their own, so only the query's own tokens get a button.
  const tokens = state.tokens || [];
  let special = 0;
  tokens.forEach((t, i) => {
    if (isSpecialToken(t)) { special++; return; }
    add(t.trim() || '␣', i, `Query token ${i + 1}: ${JSON.stringify(t)}`);
  });
  const note = $('token-note');
  note.textContent = special ? `+ ${special} padding ${special === 1 ? 'token' : 'tokens'} the model adds, in the aggregate only` : '';
}

/** A tokenizer's special token (`<|endoftext|>`, `<pad>`, `[PAD]` …), not a piece of the user's text. */
function isSpecialToken(t) {
  return /^<\|[^|<>]*\|>$/.test(t) || /^<\/?[a-z_]+>$/i.test(t) || /^\[[A-Z]+\]$/.test(t);
}

async function showPage() {
  const v = state.viewer;
  if (!v) return;
  const img = $('viewer-img');
  const overlay = $('overlay-toggle').checked;
  $('viewer-title').textContent = `${v.name} — page ${v.page} of ${v.pages}`;
  $('prev-page').disabled = v.page <= 1;
  $('next-page').disabled = v.page >= v.pages;
  $('viewer-error').textContent = '';
  $('tokens').disabled = !overlay; // disabled rather than hidden: the page keeps its place
  const tokenName = v.token === null ? 'all query tokens' : `query token ${v.token + 1}`;
  const what = overlay ? `, with the similarity map of ${tokenName}` : '';
  $('viewer-caption').textContent = `Page ${v.page} of ${v.name}${what}`;
  img.dataset.state = 'loading';
  const base = `/v1/pages/${v.doc_id}/${v.page}`;
  let url;
  try {
    if (overlay) {
      loadTokens(v).catch(() => { /* the map below reports the reason */ });
      const token = v.token === null ? '' : `&token=${v.token}`;
      url = await blobUrl(`${base}/similarity?q=${encodeURIComponent(state.query)}${token}`);
    } else {
      url = await blobUrl(`${base}/preview`);
    }
  } catch (err) {
    $('viewer-error').textContent = messageOf(err);
    try { url = overlay ? await blobUrl(`${base}/preview`) : null; } catch (_) { url = null; }
  }
  if (state.viewer !== v) return;
  img.alt = `Page ${v.page} of ${v.name}${what}`;
  img.dataset.state = overlay ? (v.token === null ? 'aggregate' : `token-${v.token}`) : 'preview';
  if (url) img.src = url; else img.removeAttribute('src');
}

function turnPage(delta) {
  const v = state.viewer;
  if (!v) return;
  const page = v.page + delta;
  if (page < 1 || page > v.pages) return;
  v.page = page;
  showPage();
}

// ---- upload ------------------------------------------------------------------------------------------------

function addFiles(files) {
  [...files].forEach((file) => uploadOne(file, null, null));
}

async function uploadOne(file, password, li) {
  if (!li) {
    li = document.createElement('li');
    $('uploads').append(li);
  }
  li.replaceChildren();
  li.dataset.state = 'uploading';
  const name = document.createElement('strong');
  name.textContent = file.name;
  const bar = document.createElement('progress');
  bar.setAttribute('aria-label', `Progress of ${file.name}`);
  const text = document.createElement('span');
  text.setAttribute('aria-live', 'polite');
  text.textContent = ' uploading…';
  li.append(name, text, bar);
  const form = new FormData();
  form.append('file', file, file.name);
  if (password) form.append('password', password);
  let resp;
  try {
    resp = await api('/v1/documents', { method: 'POST', body: form });
  } catch (err) {
    return failed(li, file, 'The upload failed: ' + messageOf(err), false);
  }
  if (!resp.ok) {
    const { message, needsPassword } = await uploadRefusal(resp);
    return failed(li, file, message, needsPassword);
  }
  const body = await resp.json();
  text.textContent = ' queued';
  li.dataset.state = 'queued';
  try {
    await follow(body.job, (status, end) => progress(li, bar, text, status, end));
  } catch (err) {
    failed(li, file, 'lost the progress of this upload: ' + messageOf(err), false);
  }
}

/**
 * Why the server refused an upload, in the page's words: a protected PDF asks for its password (only then:
 * the server says so in `rejected[].reason`), any other file shows the server's reason for it.
 */
async function uploadRefusal(resp) {
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  const rejected = body && body.error && Array.isArray(body.error.rejected) ? body.error.rejected[0] : null;
  if (rejected && rejected.reason === 'password_required') {
    return { message: 'This PDF is password-protected: enter its password to upload it.', needsPassword: true };
  }
  if (rejected && rejected.reason === 'wrong_password') {
    return { message: 'That password does not open this PDF: try again.', needsPassword: true };
  }
  if (rejected) {
    return { message: rejected.error + (rejected.hint ? ' — ' + rejected.hint : ''), needsPassword: false };
  }
  if (resp.status === 413) {
    return { message: 'The file is larger than this server takes' + (body && body.error ? ` (${body.error.message.replace(/^.*: /, '')}).` : '.'), needsPassword: false };
  }
  const e = body && body.error;
  return { message: e && e.message ? e.message : `The server answered ${resp.status} ${resp.statusText}.`, needsPassword: false };
}

function failed(li, file, message, needsPassword) {
  li.dataset.state = 'error';
  li.querySelector('progress')?.remove();
  li.querySelector('span').textContent = ' failed';
  const err = document.createElement('p');
  err.className = 'error';
  err.setAttribute('role', 'alert');
  err.textContent = message;
  li.append(err);
  if (needsPassword) {
    const form = document.createElement('form');
    const id = 'pw-' + Math.random().toString(36).slice(2);
    form.innerHTML = `<label for="${id}">Password for this PDF</label> <input id="${id}" type="password" required> <button type="submit">Retry</button>`;
    form.querySelector('label').textContent = `Password for ${file.name}`;
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      uploadOne(file, form.querySelector('input').value, li);
    });
    li.append(form);
    form.querySelector('input').focus();
  }
}

function progress(li, bar, text, status, end) {
  const f = status.files[0] || { pages_todo: 0, pages_stored: 0, pages_failed: 0, pages_skipped: 0, errors: [] };
  const todo = f.pages_todo;
  if (f.note && f.done) {
    // Settled without an ingest of its own: a duplicate of a stored document, or deleted meanwhile.
    bar.max = 1;
    bar.value = 1;
    text.textContent = ' ' + f.note;
    li.dataset.state = f.duplicate_of ? 'done' : status.state;
    if (end) loadDocuments();
    return;
  }
  if (todo > 0) {
    bar.max = todo;
    bar.value = f.pages_stored + f.pages_failed;
    text.textContent = ` ${f.pages_stored} of ${todo} pages stored`;
  } else if (f.pages_skipped > 0) {
    bar.max = 1;
    bar.value = 1;
    text.textContent = ` already stored (${f.pages_skipped} pages)`;
  } else {
    text.textContent = status.state === 'queued' ? ' queued' : ' reading…';
  }
  li.dataset.state = status.state;
  if (!end) return;
  const errors = (f.errors || []).map((e) => (e.page_number ? `page ${e.page_number}: ` : '') + e.error);
  if (status.error) errors.push(status.error);
  if (status.state === 'done' && !errors.length) {
    bar.max = 1; bar.value = 1;
    const n = f.pages_stored + f.pages_skipped;
    text.textContent = ` done: ${n} ${n === 1 ? 'page' : 'pages'} stored`;
  } else if (errors.length) {
    const p = document.createElement('p');
    p.className = 'error';
    p.setAttribute('role', 'alert');
    p.textContent = errors.join('; ');
    li.append(p);
    if (status.state === 'failed' || (status.state === 'done' && f.pages_stored === 0)) li.dataset.state = 'error';
  } else {
    text.textContent = ` ${status.state}`;
  }
  loadDocuments();
}

/** The job's server-sent events, read with fetch (EventSource cannot send the API key). */
async function follow(job, onStatus) {
  const resp = await api(`/v1/jobs/${job}/events`, { headers: { Accept: 'text/event-stream' } });
  if (!resp.ok) throw new Error(await errorOf(resp));
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const chunk = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = 'message';
      let data = '';
      for (const line of chunk.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trim();
      }
      if (!data) continue;
      onStatus(JSON.parse(data), event === 'end');
      if (event === 'end') { reader.cancel(); return; }
    }
  }
}

// ---- documents ---------------------------------------------------------------------------------------------

async function loadDocuments() {
  const body = { documents: [] };
  try {
    // The list comes in pages (`next_cursor`); the page shows every document.
    let cursor = null;
    do {
      const page = await getJson('/v1/documents?limit=1000' + (cursor ? '&cursor=' + cursor : ''));
      body.documents.push(...page.documents);
      cursor = page.next_cursor;
    } while (cursor);
  } catch (err) {
    say('Cannot list the documents: ' + messageOf(err));
    return;
  }
  const tbody = $('documents').querySelector('tbody');
  tbody.replaceChildren();
  const filter = $('doc-filter');
  const chosen = filter.value;
  filter.replaceChildren(new Option('All documents', ''));
  body.documents.forEach((d) => {
    const name = d.name || d.doc_id;
    const tr = document.createElement('tr');
    tr.dataset.docId = d.doc_id;
    const td1 = document.createElement('td');
    td1.textContent = name;
    const td2 = document.createElement('td');
    td2.textContent = `${d.stored_pages} / ${d.page_count}`;
    const td3 = document.createElement('td');
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'danger';
    del.textContent = 'Delete';
    del.setAttribute('aria-label', `Delete ${name}`);
    del.addEventListener('click', () => confirmDelete(d.doc_id, name, del));
    td3.append(del);
    tr.append(td1, td2, td3);
    tbody.append(tr);
    filter.append(new Option(name, d.doc_id, false, d.doc_id === chosen));
  });
  $('documents-empty').hidden = body.documents.length > 0;
}

function confirmDelete(docId, name, opener) {
  const dialog = $('confirm-delete');
  $('confirm-text').textContent = `Delete “${name}” and its pages from the index? This cannot be undone.`;
  const yes = $('confirm-yes');
  const no = $('confirm-no');
  const close = () => { dialog.close(); yes.onclick = null; no.onclick = null; opener.focus(); };
  yes.onclick = async () => {
    dialog.close();
    try {
      const resp = await api(`/v1/documents/${docId}`, { method: 'DELETE' });
      if (!resp.ok) throw new Error(await errorOf(resp));
      say(`Deleted ${name}.`);
    } catch (err) {
      say(`Cannot delete ${name}: ${messageOf(err)}`);
    }
    loadDocuments();
  };
  no.onclick = close;
  dialog.showModal();
  no.focus();
}

// ---- wiring ------------------------------------------------------------------------------------------------

function init() {
  $('search-form').addEventListener('submit', search);
  $('results').addEventListener('keydown', resultKeys);
  $('viewer-close').addEventListener('click', () => $('viewer').close());
  $('viewer').addEventListener('close', () => {
    const v = state.viewer;
    state.viewer = null;
    const back = v && $('results').querySelector(`.result[data-index="${v.from}"]`);
    if (back) back.focus();
  });
  $('viewer').addEventListener('keydown', (ev) => {
    if (ev.key === 'PageDown' || (ev.key === 'ArrowRight' && ev.target.tagName !== 'INPUT')) turnPage(1);
    else if (ev.key === 'PageUp' || (ev.key === 'ArrowLeft' && ev.target.tagName !== 'INPUT')) turnPage(-1);
  });
  $('prev-page').addEventListener('click', () => turnPage(-1));
  $('next-page').addEventListener('click', () => turnPage(1));
  $('overlay-toggle').addEventListener('change', showPage);
  const drop = $('drop');
  const input = $('file-input');
  input.addEventListener('change', () => { addFiles(input.files); input.value = ''; });
  drop.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); input.click(); }
  });
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    addFiles(ev.dataTransfer.files);
  });
  window.addEventListener('unhandledrejection', (ev) => { ev.preventDefault(); say('Something failed: ' + messageOf(ev.reason)); });
  loadDocuments();
}

document.addEventListener('DOMContentLoaded', init);
