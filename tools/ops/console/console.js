// The operator console (docs/console.md). Plain JS, no build step, no dependency. Every API call goes to the
// same-origin proxy under /ops/console/api/, which signs it on the server; this page holds no credential.
// Everything the API returns is put into the page as text (never as HTML).
'use strict';

const API = '/ops/console/api';
const REFRESH_MS = 15000;
const state = {
  token: null,
  accounts: [],
  view: 'queue',
  order: null,
  ordersQuery: null,
  ordersNext: null,
  recon: { available: null, date: null, yesterday: null, account: '' },
};

// ---- small helpers --------------------------------------------------------------------------------------

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k.startsWith('data-')) e.setAttribute(k, String(v));
    else if (k in e && typeof e[k] !== 'function' && k !== 'list') e[k] = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function yuan(fen) {
  if (fen === null || fen === undefined) return '–';
  const sign = fen < 0 ? '-' : '';
  const f = Math.abs(fen);
  const whole = String(Math.floor(f / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${sign}¥${whole}.${String(f % 100).padStart(2, '0')}`;
}

function ago(iso) {
  if (!iso) return '–';
  const secs = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(secs)) return iso;
  const a = Math.abs(secs);
  const text = a < 90 ? `${a} s` : a < 5400 ? `${Math.round(a / 60)} min` : a < 172800 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return secs >= 0 ? `${text} ago` : `in ${text}`;
}

function when(iso) {
  return iso ? el('time', { datetime: iso, title: iso, text: ago(iso) }) : '–';
}

function badge(text, level) {
  return el('span', { class: `badge ${level || ''}`, text });
}

const STATUS_LEVEL = {
  succeeded: 'ok', failed: 'neutral', processing: 'info', action_required: 'info',
  partially_succeeded: 'warn', reversed: 'alarm',
};

function statusBadge(status) { return badge(status, STATUS_LEVEL[status] || 'info'); }

function operatorName() {
  const v = $('operator').value.trim();
  if (!v) {
    $('operator').focus();
    $('operator').classList.add('wanted');
    toast('Type your name in “Operator” first: every change records who made it.', 'alarm');
    return null;
  }
  $('operator').classList.remove('wanted');
  localStorage.setItem('recharge-console-operator', v);
  return v;
}

let toastTimer = null;
function toast(text, level) {
  const t = $('toast');
  t.textContent = text;
  t.dataset.level = level || 'ok';
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
}

function showError(text) {
  const e = $('error');
  e.textContent = text || '';
  e.hidden = !text;
}

function errorText(r) {
  const err = r.body && r.body.error;
  return err ? `${err.code}: ${err.message}` : `HTTP ${r.status}`;
}

// ---- the API, through the signing proxy -----------------------------------------------------------------

async function api(method, path, body) {
  const headers = { 'X-Recharge-Console': '1' };
  if (state.token) headers['X-Recharge-Console-Token'] = state.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(API + path, {
      method, headers, cache: 'no-store', credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    return { status: 0, body: { error: { code: 'console_unreachable', message: 'the console server does not answer: is it still running?' } } };
  }
  let parsed = null;
  try { parsed = await resp.json(); } catch (e) { parsed = null; }
  if (resp.status === 401 && parsed && parsed.error && parsed.error.code === 'console_token') {
    showError('This page has no valid console token: open the address `recharge-ops console` printed.');
  }
  return { status: resp.status, body: parsed };
}

function q(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === '' || v === false) continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

// ---- the counts on top: calm when nothing is wrong, loud when something is ------------------------------

function setCount(id, n, more, level) {
  const a = $(id);
  a.dataset.count = n === null ? '' : String(n);
  a.dataset.level = n === null ? 'unknown' : n > 0 ? level : 'calm';
  a.querySelector('b').textContent = n === null ? '?' : `${n}${more ? '+' : ''}`;
}

async function refreshCounts() {
  const [queue, abandoned, accounts, recon] = await Promise.all([
    api('GET', `/orders${q({ needs_operator: true, limit: 200 })}`),
    api('GET', `/notifications${q({ abandoned: true, limit: 200 })}`),
    api('GET', '/accounts'),
    reconSummary(),
  ]);
  const failures = [queue, abandoned, accounts].filter((r) => r.status !== 200);
  if (failures.length) showError(`Could not read everything: ${errorText(failures[0])}`);
  else showError('');

  const queued = queue.status === 200 ? queue.body.orders : null;
  setCount('count-queue', queued ? queued.length : null, queue.status === 200 && queue.body.next, 'alarm');
  const given = abandoned.status === 200 ? abandoned.body.orders : null;
  setCount('count-abandoned', given ? given.length : null, abandoned.status === 200 && abandoned.body.next, 'alarm');
  if (accounts.status === 200) {
    state.accounts = accounts.body.accounts || [];
    fillAccountFilter();
  }
  const accs = accounts.status === 200 ? state.accounts : null;
  setCount('count-disabled', accs ? accs.filter((a) => a.mode !== 'enabled').length : null, false, 'warn');
  setCount('count-low', accs ? accs.filter(isLow).length : null, false, 'warn');
  $('count-mismatches').hidden = recon === null;
  $('tabs').querySelector('[data-view="recon"]').hidden = recon === null;
  if (recon !== null) setCount('count-mismatches', recon < 0 ? null : recon, false, 'alarm');

  const levels = [...document.querySelectorAll('#counts .count:not([hidden])')].map((a) => a.dataset.level);
  const overall = levels.includes('alarm') ? 'alarm' : levels.includes('unknown') ? 'unknown' : levels.includes('warn') ? 'warn' : 'calm';
  document.body.dataset.state = overall;
  const health = $('health');
  health.dataset.state = overall;
  const urgent = [...document.querySelectorAll('#counts .count[data-level="alarm"]')]
    .map((a) => `${a.querySelector('b').textContent} ${a.querySelector('span').textContent}`);
  health.textContent = {
    alarm: `Needs attention: ${urgent.join(' · ')}`,
    warn: 'Nothing is stuck. Some accounts are not taking orders or run low.',
    unknown: 'Some figures could not be read.',
    calm: 'All clear: nothing needs an operator.',
  }[overall];
  $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  return { queue, abandoned };
}

function isLow(a) {
  return a.balance_fen !== null && a.balance_fen !== undefined && a.low_balance_fen !== null
    && a.low_balance_fen !== undefined && a.balance_fen < a.low_balance_fen;
}

function fillAccountFilter() {
  const sel = $('search-account');
  const current = sel.value;
  sel.replaceChildren(el('option', { value: '', text: 'any' }),
    ...state.accounts.map((a) => el('option', { value: a.provider_account, text: a.provider_account })));
  sel.value = current;
}

// ---- order lists ----------------------------------------------------------------------------------------

function orderRows(tbody, orders, append) {
  if (!append) tbody.replaceChildren();
  for (const o of orders) {
    const open = () => { location.hash = `#order/${o.order_id}`; };
    tbody.append(el('tr', { 'data-order-id': o.order_id, class: o.needs_operator ? 'attention' : '', tabindex: 0,
      onclick: open, onkeydown: (e) => { if (e.key === 'Enter') open(); } },
      el('td', { class: 'mono' }, el('a', { href: `#order/${o.order_id}`, text: o.order_id })),
      el('td', { text: o.app }),
      el('td', {}, statusBadge(o.status)),
      el('td', { text: o.provider_account || '–' }),
      el('td', { text: o.product_code }),
      el('td', {}, o.attention ? badge(o.attention.reason.replace(/_/g, ' '), o.needs_operator ? 'alarm' : 'info') : ''),
      el('td', {}, o.attention ? when(o.attention.since) : ''),
      el('td', {}, when(o.created_at))));
  }
}

async function showQueue(counts) {
  const r = counts ? counts.queue : await api('GET', `/orders${q({ needs_operator: true, limit: 200 })}`);
  if (r.status !== 200) return showError(errorText(r));
  orderRows($('queue-table').tBodies[0], r.body.orders);
  $('queue-empty').hidden = r.body.orders.length > 0;
  $('queue-table').hidden = r.body.orders.length === 0;
}

async function showNotifications(counts) {
  const r = counts ? counts.abandoned : await api('GET', `/notifications${q({ abandoned: true, limit: 200 })}`);
  if (r.status !== 200) return showError(errorText(r));
  orderRows($('notifications-table').tBodies[0], r.body.orders);
  $('notifications-empty').hidden = r.body.orders.length > 0;
  $('notifications-table').hidden = r.body.orders.length === 0;
}

async function search(ev) {
  if (ev) ev.preventDefault();
  const id = $('search-id').value.trim();
  if (id) {
    const slash = id.indexOf('/');
    let lookup;
    if (slash > 0) lookup = { app: id.slice(0, slash), merchant_order_no: id.slice(slash + 1) };
    else if (id.length === 22) lookup = { attempt_id: id };
    else { location.hash = `#order/${id}`; return; }
    const r = await api('GET', `/orders${q(lookup)}`);
    if (r.status !== 200) return showError(errorText(r));
    if (r.body.orders.length === 1) { location.hash = `#order/${r.body.orders[0].order_id}`; return; }
    orderRows($('orders-table').tBodies[0], []);
    $('orders-empty').hidden = false;
    $('orders-more').hidden = true;
    return;
  }
  state.ordersQuery = {
    status: $('search-status').value, provider_account: $('search-account').value,
    app: $('search-app').value.trim(), older_than: $('search-older').value.trim(),
    needs_operator: $('search-queue').checked, limit: 50,
  };
  await moreOrders(false);
}

async function moreOrders(append) {
  const params = { ...state.ordersQuery };
  if (append && state.ordersNext) params.cursor = state.ordersNext;
  const r = await api('GET', `/orders${q(params)}`);
  if (r.status !== 200) return showError(errorText(r));
  showError('');
  orderRows($('orders-table').tBodies[0], r.body.orders, append);
  state.ordersNext = r.body.next;
  $('orders-more').hidden = !r.body.next;
  $('orders-empty').hidden = append || r.body.orders.length > 0;
}

// ---- one order ------------------------------------------------------------------------------------------

function field(label, value) {
  return [el('dt', { text: label }), el('dd', {}, value === null || value === undefined || value === '' ? '–' : value)];
}

function attemptStateText(s) {
  const parts = [s.state];
  if (s.reason) parts.push(`${s.reason.code}: ${s.reason.message}`);
  if (s.delivered_fen !== undefined) parts.push(`delivered ${yuan(s.delivered_fen)}`);
  if (s.failover_allowed !== undefined) parts.push(s.failover_allowed ? 'may fail over' : 'no failover');
  return parts.join(' · ');
}

const OPEN_STATES = ['submitting', 'accepted', 'unknown', 'action_required'];

async function showOrder(id) {
  const box = $('detail');
  box.replaceChildren(el('p', { class: 'muted', text: `Loading ${id}…` }));
  const r = await api('GET', `/orders/${encodeURIComponent(id)}`);
  if (r.status !== 200) {
    box.replaceChildren(el('p', { class: 'error', text: r.status === 404 ? `No order ${id}.` : errorText(r) }));
    box.dataset.orderId = '';
    return;
  }
  renderOrder(r.body.order);
}

function renderOrder(o) {
  state.order = o;
  const box = $('detail');
  box.dataset.orderId = o.order_id;
  box.dataset.status = o.status;
  const n = o.notification || {};
  const head = el('div', { class: 'order-head' },
    el('h2', {}, 'Order ', el('span', { class: 'mono', text: o.order_id }), ' ', statusBadge(o.status),
      o.needs_operator ? badge('needs an operator', 'alarm') : null),
    el('dl', { class: 'facts' },
      field('Merchant order', `${o.app} / ${o.merchant_order_no}`),
      field('Product', o.product_code),
      field('Account', o.account),
      field('Face value', yuan(o.face_value_fen)),
      field('Delivered', o.delivered_fen === undefined || o.delivered_fen === null ? null : yuan(o.delivered_fen)),
      field('Failure', o.failure ? `${o.failure.code}: ${o.failure.message}` : null),
      field('Raw failure', o.raw_failure ? `${o.raw_failure.code}: ${o.raw_failure.message}` : null),
      field('Routes exhausted', o.routes_exhausted ? `${o.routes_exhausted.code}: ${o.routes_exhausted.message}` : null),
      field('Created', when(o.created_at)),
      field('Updated', when(o.updated_at)),
      field('Queue', !o.attention ? 'not queued'
        : o.needs_operator ? el('span', {}, badge(o.attention.reason.replace(/_/g, ' '), 'alarm'), ' since ', when(o.attention.since))
          : el('span', {}, `enters it ${ago(o.attention.since)} (${o.attention.reason.replace(/_/g, ' ')}) unless settled`)),
      field('Escalates after', `${o.escalate_after_secs} s`),
      field('Notification', n.notify_url
        ? `sequence ${n.notified_sequence} of ${o.sequence} acknowledged${n.abandoned ? ' · ABANDONED' : ''}${n.failed_tries ? ` · ${n.failed_tries} failed tries` : ''}${n.next_at ? ` · next ${n.next_at}` : ''}`
        : 'no notify_url')));

  const actions = el('div', { class: 'actions' },
    el('button', { id: 'action-query', type: 'button', onclick: queryNow,
      disabled: !o.attempts.some((a) => OPEN_STATES.includes(a.state.state)), text: 'Query the provider now' }),
    el('button', { id: 'action-notify', type: 'button', onclick: notifyNow, disabled: !n.notify_url,
      text: 'Redeliver the merchant notification' }));

  const attempts = el('table', { class: 'list', id: 'attempts-table' },
    el('thead', {}, el('tr', {}, ...['#', 'Attempt id', 'Provider account', 'Product', 'Cost', 'State', 'Provider ref', 'Opened', 'Updated', 'Polls']
      .map((h) => el('th', { text: h })))),
    el('tbody', {}, ...o.attempts.map((a) => el('tr', { 'data-attempt': a.attempt, class: OPEN_STATES.includes(a.state.state) ? 'attention' : '' },
      el('td', { text: a.attempt }),
      el('td', { class: 'mono', text: a.attempt_id }),
      el('td', { text: a.provider_account }),
      el('td', { text: a.provider_product }),
      el('td', { text: yuan(a.cost_fen) }),
      el('td', { text: attemptStateText(a.state) }),
      el('td', { class: 'mono', text: a.provider_ref || '–' }),
      el('td', {}, when(a.opened_at)),
      el('td', {}, when(a.updated_at)),
      el('td', { text: a.polls }))))
  );

  const anomalies = (o.anomalies || []).length
    ? el('div', {}, el('h3', { text: 'Anomalies' }), el('ul', { class: 'anomalies' },
      ...o.anomalies.map((a) => el('li', {}, badge(a.kind.replace(/_/g, ' '), 'alarm'), ` attempt ${a.attempt}, `, when(a.at)))))
    : null;

  const audit = el('table', { class: 'list', id: 'audit-table' },
    el('thead', {}, el('tr', {}, ...['v', 'When', 'Change', 'Detail'].map((h) => el('th', { text: h })))),
    el('tbody', {}, ...(o.audit || []).map((e) => el('tr', {},
      el('td', { text: e.version }),
      el('td', {}, el('time', { datetime: e.at, title: ago(e.at), text: e.at })),
      el('td', { text: e.summary }),
      el('td', { class: 'detail' }, auditDetail(e.detail))))));

  box.replaceChildren(...[head, actions, el('h3', { text: 'Attempts' }), attempts, anomalies,
    resolveForm(o), el('h3', { text: 'Audit trail' }), audit].filter(Boolean));
}

function auditDetail(detail) {
  if (!detail) return '';
  try {
    const v = JSON.parse(detail);
    if (v && typeof v === 'object') {
      return el('dl', { class: 'kv' }, ...Object.entries(v).flatMap(([k, x]) =>
        [el('dt', { text: k }), el('dd', { text: typeof x === 'string' ? x : JSON.stringify(x) })]));
    }
  } catch (e) { /* plain text */ }
  return detail;
}

function resolveForm(o) {
  const open = o.attempts.filter((a) => OPEN_STATES.includes(a.state.state));
  const choices = (open.length ? open : o.attempts).slice().reverse();
  const form = el('form', { id: 'resolve-form', class: 'resolve' },
    el('h3', { text: 'Resolve an attempt with evidence' }),
    el('p', { class: 'muted', text: 'Applied through the state machine as an operator event; the merchant is notified of any change. ' +
      'Never “failed” while the provider might have delivered.' }),
    el('div', { class: 'row' },
      el('label', {}, 'Attempt', el('select', { id: 'resolve-attempt' },
        ...choices.map((a) => el('option', { value: a.attempt, text: `${a.attempt} · ${a.provider_account} · ${a.state.state}` })))),
      el('label', {}, 'Outcome', el('select', { id: 'resolve-outcome', onchange: outcomeChanged },
        el('option', { value: 'succeeded', text: 'succeeded (delivered)' }),
        el('option', { value: 'failed', text: 'failed (provider confirms nothing delivered)' }),
        el('option', { value: 'partially_succeeded', text: 'partially succeeded' }),
        el('option', { value: 'not_submitted', text: 'not submitted (never reached the provider)' }))),
      el('label', { id: 'resolve-delivered-label', hidden: true }, 'Delivered (fen)',
        el('input', { id: 'resolve-delivered', type: 'number', min: 1, max: o.face_value_fen - 1, step: 1 })),
      el('label', { id: 'resolve-failover-label', hidden: true }, 'Then',
        el('select', { id: 'resolve-failover' },
          el('option', { value: '', text: 'default' }),
          el('option', { value: 'true', text: 'fail over to the next route' }),
          el('option', { value: 'false', text: 'stop here' })))),
    el('label', { class: 'wide' }, 'Reason', el('textarea', { id: 'resolve-reason', rows: 2, maxLength: 500, required: true,
      placeholder: 'why this is the outcome' })),
    el('label', { class: 'wide' }, 'Evidence', el('textarea', { id: 'resolve-evidence', rows: 3, maxLength: 2000, required: true,
      placeholder: 'ticket number, provider statement line, screenshot reference…' })),
    el('div', { class: 'row' },
      el('button', { id: 'resolve-submit', type: 'submit', class: 'primary', text: 'Resolve' }),
      el('span', { id: 'resolve-result', 'data-status': '' })));
  form.addEventListener('submit', resolve);
  return form;
}

function outcomeChanged() {
  const v = $('resolve-outcome').value;
  $('resolve-delivered-label').hidden = v !== 'partially_succeeded';
  $('resolve-failover-label').hidden = !(v === 'failed' || v === 'not_submitted');
}

async function resolve(ev) {
  ev.preventDefault();
  const o = state.order;
  const operator = operatorName();
  if (!o || !operator) return;
  const result = $('resolve-result');
  const body = {
    attempt: Number($('resolve-attempt').value),
    outcome: $('resolve-outcome').value,
    reason: $('resolve-reason').value,
    evidence: $('resolve-evidence').value,
    operator,
  };
  if (body.outcome === 'partially_succeeded') body.delivered_fen = Number($('resolve-delivered').value);
  const fo = $('resolve-failover').value;
  if ((body.outcome === 'failed' || body.outcome === 'not_submitted') && fo) body.failover = fo === 'true';
  $('resolve-submit').disabled = true;
  result.dataset.status = 'pending';
  result.textContent = 'Resolving…';
  const r = await api('POST', `/orders/${encodeURIComponent(o.order_id)}/resolve`, body);
  $('resolve-submit').disabled = false;
  if (r.status !== 200) {
    result.dataset.status = 'error';
    result.textContent = errorText(r);
    return;
  }
  toast(`Resolved: order ${o.order_id} is ${r.body.order.status}.`, 'ok');
  await showOrder(o.order_id);
  const after = $('resolve-result');
  after.dataset.status = 'ok';
  after.textContent = `Resolved: ${r.body.order.status}`;
  refreshCounts();
}

async function queryNow() {
  const o = state.order;
  const r = await api('POST', `/orders/${encodeURIComponent(o.order_id)}/query`, {});
  if (r.status !== 200) return toast(errorText(r), 'alarm');
  toast(`Queried attempt ${r.body.queried_attempt}: the order is ${r.body.order.status}.`, 'ok');
  await showOrder(o.order_id);
  refreshCounts();
}

async function notifyNow() {
  const o = state.order;
  const r = await api('POST', `/orders/${encodeURIComponent(o.order_id)}/notify`, {});
  if (r.status !== 200) return toast(errorText(r), 'alarm');
  toast(r.body.delivered ? `Delivered sequence ${r.body.sequence} to the merchant.` : `Not delivered: ${r.body.failure}`,
    r.body.delivered ? 'ok' : 'alarm');
  await showOrder(o.order_id);
  refreshCounts();
}

// ---- provider accounts ----------------------------------------------------------------------------------

const MODE_LEVEL = { enabled: 'ok', draining: 'warn', disabled: 'alarm' };
const MODE_VERB = { enabled: 'Enable', draining: 'Drain', disabled: 'Disable' };

function showAccounts() {
  const tbody = $('accounts-table').tBodies[0];
  tbody.replaceChildren(...state.accounts.map((a) => el('tr', {
    'data-account': a.provider_account, 'data-mode': a.mode,
    class: a.mode !== 'enabled' || isLow(a) ? 'attention' : '' },
  el('td', { class: 'mono', text: a.provider_account }),
  el('td', { text: a.protocol }),
  el('td', {}, badge(a.mode, MODE_LEVEL[a.mode] || 'info')),
  el('td', { text: a.takes_new_orders ? 'yes' : 'no' }),
  el('td', {}, yuan(a.balance_fen), isLow(a) ? badge('low', 'warn') : ''),
  el('td', { text: yuan(a.low_balance_fen) }),
  el('td', {}, when(a.balance_checked_at)),
  el('td', { text: a.updated_by || '–' }),
  el('td', { class: 'buttons' }, ...['enabled', 'draining', 'disabled'].map((mode) =>
    el('button', { type: 'button', class: `mode-${mode}`, 'data-mode': mode, disabled: a.mode === mode,
      text: MODE_VERB[mode], onclick: (e) => changeMode(e.currentTarget, a.provider_account, mode) }))))));
}

// Two clicks: the first arms the button for five seconds, the second applies.
async function changeMode(button, account, mode) {
  const operator = operatorName();
  if (!operator) return;
  if (button.dataset.armed !== 'true') {
    button.dataset.armed = 'true';
    button.textContent = `Confirm: ${MODE_VERB[mode].toLowerCase()} ${account}`;
    setTimeout(() => { if (button.isConnected) { button.dataset.armed = ''; button.textContent = MODE_VERB[mode]; } }, 5000);
    return;
  }
  button.disabled = true;
  const r = await api('PUT', `/accounts/${encodeURIComponent(account)}`, { mode, operator });
  if (r.status !== 200) { button.disabled = false; return toast(errorText(r), 'alarm'); }
  toast(`${account} is ${r.body.account.mode} (every function follows within a minute).`, 'ok');
  await refreshCounts();
  showAccounts();
}

// ---- reconciliation -------------------------------------------------------------------------------------

// Reconciliation reports are per provider account and day (docs/reconciliation.md). The count on top is the
// open alarming mismatches (all but top-ups, not settled by an operator) of today's and yesterday's reports;
// null where the gateway serves no reconciliation routes (the count is then hidden).
function nextDay(date) {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

async function reconSummary() {
  // Without a date the API answers for its yesterday (in its configured day boundary); today is the day after.
  const yesterday = await api('GET', '/recon/mismatches');
  if (yesterday.status === 404 && yesterday.body && yesterday.body.error && yesterday.body.error.code === 'not_found') {
    state.recon.available = false;
    return null;
  }
  state.recon.available = true;
  if (yesterday.status !== 200) return -1;
  state.recon.yesterday = yesterday.body.date;
  const today = await api('GET', `/recon/mismatches${q({ date: nextDay(yesterday.body.date) })}`);
  if (today.status !== 200) return -1;
  return [yesterday, today].reduce((n, r) => n + (r.body.mismatches || []).filter((m) => m.alarm && m.open !== false).length, 0);
}

function millisText(v) {
  if (v === null || v === undefined) return '–';
  const d = typeof v === 'number' ? new Date(v) : new Date(Date.parse(v));
  return Number.isNaN(d.getTime()) ? String(v) : d.toISOString();
}

function kindBadge(m) {
  return badge(m.kind.replace(/_/g, ' '), m.alarm ? 'alarm' : 'info');
}

async function showRecon(date) {
  const box = $('recon');
  if (state.recon.available === false) {
    box.replaceChildren(el('p', { class: 'muted', text: 'This gateway serves no reconciliation reports.' }));
    return;
  }
  const day = date || state.recon.date || state.recon.yesterday || new Date().toISOString().slice(0, 10);
  state.recon.date = day;
  const account = state.recon.account || '';
  const [reports, mismatches] = await Promise.all([
    api('GET', `/recon${q({ date: day, account })}`),
    api('GET', `/recon/mismatches${q({ date: day, account })}`),
  ]);
  const controls = el('form', { id: 'recon-form', class: 'filters' },
    el('label', {}, 'Day', el('input', { id: 'recon-date', type: 'date', value: day })),
    el('label', {}, 'Provider account', el('select', { id: 'recon-account' },
      el('option', { value: '', text: 'every account' }),
      ...state.accounts.map((a) => el('option', { value: a.provider_account, text: a.provider_account, selected: a.provider_account === account })))),
    el('button', { type: 'submit', text: 'Show' }),
    el('button', { type: 'button', id: 'recon-run', text: 'Run the reconciliation of this day now', onclick: runRecon }));
  controls.addEventListener('submit', (e) => {
    e.preventDefault();
    state.recon.account = $('recon-account').value;
    location.hash = `#recon/${$('recon-date').value}`;
    if (location.hash === `#recon/${$('recon-date').value}`) showRecon($('recon-date').value);
  });
  if (reports.status !== 200 || mismatches.status !== 200) {
    box.replaceChildren(controls, el('p', { class: 'error', text: errorText(reports.status !== 200 ? reports : mismatches) }));
    return;
  }
  const list = reports.body.reports || [];
  const found = mismatches.body.mismatches || [];
  const alarming = found.filter((m) => m.alarm && m.open !== false).length;
  const settled = found.filter((m) => m.open === false).length;
  const settledText = settled ? ` ${settled} settled.` : '';
  const summary = el('p', { id: 'recon-summary', class: alarming ? 'error' : list.length ? 'empty' : 'muted',
    'data-mismatches': alarming, 'data-settled': settled, 'data-reports': list.length,
    text: !list.length ? `No report for ${day} yet.`
      : alarming ? `${alarming} open mismatch${alarming === 1 ? '' : 'es'} on ${day} across ${list.length} report${list.length === 1 ? '' : 's'}: settle the money, resolve the order where it is wrong, then settle the mismatch.${settledText}`
        : `${day}: ${list.length} report${list.length === 1 ? '' : 's'}, no open mismatch.${settledText}` });

  const table = el('table', { class: 'list', id: 'mismatches-table', hidden: !found.length },
    el('thead', {}, el('tr', {}, ...['Kind', 'Account', 'Order', 'Ours', 'Theirs', 'Amount', 'Order now', 'Evidence', 'State'].map((h) => el('th', { text: h })))),
    el('tbody', {}, ...found.map((m) => el('tr', { 'data-kind': m.kind, 'data-order-id': m.order_id || null, 'data-key': m.key,
      'data-state': m.open === false ? 'settled' : 'open', class: m.alarm && m.open !== false ? 'attention' : '' },
      el('td', {}, kindBadge(m)),
      el('td', { class: 'mono', text: m.account }),
      el('td', { class: 'mono' }, m.order_id ? el('a', { href: `#order/${m.order_id}`, text: m.order_id, onclick: (e) => e.stopPropagation() }) : '–',
        m.attempt_id ? el('div', { class: 'muted', text: m.attempt_id }) : null),
      el('td', { text: m.ours }),
      el('td', { text: m.theirs }),
      el('td', { text: m.amount_fen === null || m.amount_fen === undefined ? '–' : yuan(m.amount_fen) }),
      el('td', {}, m.order_status_now ? statusBadge(m.order_status_now) : '–'),
      el('td', { class: 'detail' }, el('details', {}, el('summary', { text: 'show' }), el('pre', { text: m.evidence }))),
      el('td', { class: 'settle' }, m.open === false ? settledCell(m.settlement)
        : el('button', { type: 'button', class: 'settle-open', text: 'Settle…', onclick: (e) => openSettle(e.target, m) }))))));

  const cards = list.map((r) => {
    const b = r.balance || {};
    const p = r.prices || {};
    const rq = r.requery || {};
    const n = (r.mismatches || []).filter((m) => m.kind !== 'balance_top_up' && m.open !== false).length;
    return el('div', { class: 'report', 'data-account': r.account },
      el('h3', {}, el('span', { class: 'mono', text: r.account }), ' ', n ? badge(`${n} mismatch${n === 1 ? '' : 'es'}`, 'alarm') : badge('clean', 'ok'),
        el('small', { class: 'muted', text: ` generated ${millisText(r.generated_at)}` })),
      !(r.totals || []).length ? el('p', { class: 'muted', text: 'No order on this account that day.' }) : el('table', { class: 'list' },
        el('thead', {}, el('tr', {}, ...['Status', 'Orders', 'Face value', 'Cost'].map((h) => el('th', { text: h })))),
        el('tbody', {}, ...(r.totals || []).map((t) => el('tr', {},
          el('td', {}, statusBadge(t.status)), el('td', { text: t.orders }), el('td', { text: yuan(t.face_fen) }), el('td', { text: yuan(t.cost_fen) }))))),
      el('dl', { class: 'facts' },
        field('Prices reported', `${p.reported ?? 0}, ${p.mismatched ?? 0} off the route cost`),
        field('Reported / route cost', `${yuan(p.reported_cost_fen)} / ${yuan(p.route_cost_fen)}`),
        field('Balance', b.judged ? `${yuan(b.opening_fen)} → ${yuan(b.closing_fen)} (${b.snapshots} snapshots)` : `not judged (${b.snapshots ?? 0} snapshots)`),
        field('Drops / delivered cost', `${yuan(b.drops_fen)} / ${yuan(b.delivered_cost_fen)}`),
        field('Unexplained drop', b.unexplained_fen ? badge(yuan(b.unexplained_fen), 'alarm') : yuan(0)),
        field('Top-ups', yuan(b.top_ups_fen)),
        field('Re-query', rq.supported ? `${rq.queried}/${rq.eligible} asked, ${rq.diverged} diverged, ${rq.inconclusive} inconclusive, ${rq.remaining ? `${rq.remaining} still to ask (continued every minute)` : 'done'}` : 'the protocol has no query')));
  });
  box.replaceChildren(controls, summary, table, ...cards);
}

function settledCell(st) {
  const s = st || {};
  return el('div', { class: 'settled' }, badge('settled', 'ok'),
    el('div', { text: `by ${s.operator || '?'} ${millisText(s.at)}` }),
    el('div', { class: 'muted', text: s.note || '' }));
}

// Settling a mismatch records who settled it, why and on what evidence (POST /ops/recon/mismatches/settle);
// the mismatch stops counting as open, and a rerun of the day keeps it.
function openSettle(button, m) {
  if (document.getElementById('settle-form')) document.getElementById('settle-form').remove();
  const form = el('form', { id: 'settle-form', class: 'resolve', 'data-key': m.key },
    el('label', { class: 'wide' }, 'What was done', el('textarea', { id: 'settle-note', rows: 2, maxLength: 500, required: true,
      placeholder: 'e.g. refunded the merchant; the provider credited the reversal' })),
    el('label', { class: 'wide' }, 'Evidence', el('textarea', { id: 'settle-evidence', rows: 2, maxLength: 2000, required: true,
      placeholder: 'provider ticket, statement line, transfer reference' })),
    el('div', { class: 'actions' },
      el('button', { id: 'settle-submit', type: 'submit', class: 'primary', text: 'Settle the mismatch' }),
      el('span', { id: 'settle-result', 'data-status': '' })));
  form.addEventListener('submit', (ev) => settle(ev, m));
  button.replaceWith(form);
  $('settle-note').focus();
}

async function settle(ev, m) {
  ev.preventDefault();
  const operator = operatorName();
  if (!operator) return;
  const body = { account: m.account, date: m.date, key: m.key, operator,
    note: $('settle-note').value, evidence: $('settle-evidence').value };
  $('settle-submit').disabled = true;
  const r = await api('POST', '/recon/mismatches/settle', body);
  $('settle-submit').disabled = false;
  $('settle-result').dataset.status = String(r.status);
  if (r.status !== 200) {
    $('settle-result').textContent = errorText(r);
    return;
  }
  toast(`Settled ${m.kind.replace(/_/g, ' ')}${m.order_id ? ` of ${m.order_id}` : ''}.`, 'ok');
  await refreshCounts();
  await showRecon(m.date);
}

async function runRecon() {
  const date = $('recon-date').value;
  const account = $('recon-account').value;
  const button = $('recon-run');
  button.disabled = true;
  button.textContent = 'Running…';
  const body = { date };
  if (account) body.account = account;
  const r = await api('POST', '/recon/run', body);
  button.disabled = false;
  if (r.status !== 200) return toast(errorText(r), 'alarm');
  const n = (r.body.reports || []).reduce((k, rep) => k + (rep.mismatches || []).filter((m) => m.kind !== 'balance_top_up' && m.open !== false).length, 0);
  toast(`Reconciled ${r.body.date}: ${(r.body.reports || []).length} reports, ${n} open mismatches.`, n ? 'alarm' : 'ok');
  await refreshCounts();
  await showRecon(date);
}

// ---- navigation -----------------------------------------------------------------------------------------

async function route() {
  const hash = location.hash.replace(/^#/, '') || 'queue';
  const [view, arg] = hash.split('/');
  const known = ['queue', 'orders', 'accounts', 'recon', 'notifications', 'order'];
  state.view = known.includes(view) ? view : 'queue';
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== `view-${state.view}`;
  for (const a of document.querySelectorAll('#tabs a')) {
    a.classList.toggle('current', a.dataset.view === state.view || (state.view === 'order' && a.dataset.view === 'orders'));
  }
  document.body.dataset.view = state.view;
  switch (state.view) {
    case 'queue': return showQueue();
    case 'orders': return null;
    case 'accounts': return showAccounts();
    case 'recon': return showRecon(arg ? decodeURIComponent(arg) : null);
    case 'notifications': return showNotifications();
    case 'order': return showOrder(decodeURIComponent(arg || ''));
    default: return null;
  }
}

async function refreshAll() {
  const counts = await refreshCounts();
  switch (state.view) {
    case 'queue': return showQueue(counts);
    case 'notifications': return showNotifications(counts);
    // Not under a button the operator has armed: re-rendering would disarm it.
    case 'accounts': return document.querySelector('button[data-armed="true"]') ? null : showAccounts();
    default: return null;
  }
}

function start() {
  // `recharge-ops console` puts its token in the fragment: keep it for this tab, then take it off the address.
  const m = location.hash.match(/(?:^#|&)token=([0-9a-f]+)/);
  if (m) {
    sessionStorage.setItem('recharge-console-token', m[1]);
    const rest = location.hash.replace(/^#/, '').split('&').filter((p) => !p.startsWith('token=')).join('&');
    history.replaceState(null, '', `${location.pathname}#${rest || 'queue'}`);
  }
  state.token = sessionStorage.getItem('recharge-console-token');
  $('operator').value = localStorage.getItem('recharge-console-operator') || '';
  $('refresh').addEventListener('click', () => refreshAll().then(route));
  $('search-form').addEventListener('submit', search);
  $('orders-more').addEventListener('click', () => moreOrders(true));
  window.addEventListener('hashchange', route);
  refreshCounts().then(route);
  setInterval(() => { if (!document.hidden) refreshAll(); }, REFRESH_MS);
}

document.addEventListener('DOMContentLoaded', start);
