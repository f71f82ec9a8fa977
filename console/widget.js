/*
 * Kommutator website chat widget. One tag on a page:
 *
 *   <script src="https://hub.example.com/widget.js" data-site="shop" async></script>
 *
 * Optional attributes: data-lang="ru|en", data-title, data-identity-id / data-identity-hash
 * (HMAC-SHA256 of the id with the site's identity secret, computed by the site's backend),
 * data-name / data-email (of a signed-in customer).
 * Styling: CSS variables on the page, e.g. `#kommutator-widget { --kw-accent: #0a7; }`:
 * --kw-accent, --kw-accent-ink, --kw-bg, --kw-ink, --kw-radius, --kw-font, --kw-z.
 *
 * It lives in its own shadow DOM, defines one global (`KommutatorWidget`), never
 * throws into the page, and speaks the widget WebSocket protocol (docs/ws-protocol.md):
 * the conversation is kept in this browser and resumed with `since` after a reload or a
 * reconnect, so no reply is lost.
 */
(function () {
  'use strict';
  if (window.KommutatorWidget) return;
  var script = document.currentScript;
  if (!script) return;

  var STR = {
    en: {
      title: 'Chat with us', open: 'Open the chat', close: 'Close the chat', send: 'Send',
      placeholder: 'Type a message…', name: 'Your name', contact: 'Phone or email',
      consent: 'I agree to the processing of my personal data', start: 'Start the chat',
      need_contact: 'Please leave a phone number or an email so we can answer.',
      need_consent: 'Please agree to the processing of your data.',
      offline: 'No one is online right now. Leave a message and your contact: we will answer as soon as we can.',
      typing: 'Typing…', reconnecting: 'Reconnecting…', failed: 'Not sent, retrying…',
      too_fast: 'You are sending too fast; wait a moment.',
    },
    ru: {
      title: 'Напишите нам', open: 'Открыть чат', close: 'Закрыть чат', send: 'Отправить',
      placeholder: 'Введите сообщение…', name: 'Ваше имя', contact: 'Телефон или email',
      consent: 'Я согласен на обработку персональных данных', start: 'Начать чат',
      need_contact: 'Оставьте телефон или email, чтобы мы могли ответить.',
      need_consent: 'Нужно согласие на обработку данных.',
      offline: 'Сейчас никого нет на месте. Оставьте сообщение и контакт — мы ответим, как только сможем.',
      typing: 'Печатает…', reconnecting: 'Переподключение…', failed: 'Не отправлено, пробуем ещё…',
      too_fast: 'Слишком часто; подождите немного.',
    },
  };

  var site = script.getAttribute('data-site') || '';
  var hub = new URL(script.src, location.href);
  var wsUrl = (hub.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + hub.host + '/ws/widget?site=' + encodeURIComponent(site);
  var lang = (script.getAttribute('data-lang') || navigator.language || 'en').slice(0, 2).toLowerCase();
  if (!STR[lang]) lang = 'en';
  var S = STR[lang];
  var KEY = 'kommutator-widget:' + hub.host + ':' + site;
  var MAX_KEPT = 200;

  function load() {
    try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch (e) { return {}; }
  }
  function save() {
    try {
      state.messages = state.messages.slice(-MAX_KEPT);
      localStorage.setItem(KEY, JSON.stringify({ token: state.token, since: state.since, messages: state.messages, outbox: state.outbox }));
    } catch (e) { /* storage full or blocked: the chat still works for this page */ }
  }

  var saved = load();
  var state = {
    token: saved.token || null,
    since: saved.since || 0,
    messages: saved.messages || [], // {key, dir: 'in'|'out', text, at, seq?}
    outbox: saved.outbox || [], // {cid, text} sent but not acknowledged
    ws: null, live: false, open: false, unread: 0, online: true, backoff: 500,
    typingUntil: 0, prechat: null,
  };

  // ---- DOM -------------------------------------------------------------------------
  var host = document.createElement('div');
  host.id = 'kommutator-widget';
  var root = host.attachShadow({ mode: 'open' });
  // `!important` on the host: the page's own `!important` rules reach the host element and
  // would otherwise be inherited by everything inside.
  var css = ':host{all:initial!important;position:fixed!important;right:20px!important;bottom:20px!important;' +
    'z-index:var(--kw-z,2147483000)!important;display:block!important;' +
    'font:14px/1.4 var(--kw-font,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif)!important;color:var(--kw-ink,#1d2330)!important}' +
    '*{box-sizing:border-box}' +
    '.bubble{display:grid;place-items:center;width:56px;height:56px;border-radius:50%;border:0;background:var(--kw-accent,#2456c7);color:var(--kw-accent-ink,#fff);cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);font-size:24px;position:relative}' +
    '.badge{position:absolute;top:-4px;right:-4px;background:#c62828;color:#fff;border-radius:999px;font-size:12px;padding:1px 6px}' +
    '.badge:empty{display:none}' +
    '.panel{position:absolute;right:0;bottom:68px;width:min(360px,calc(100vw - 40px));height:min(520px,calc(100vh - 110px));background:var(--kw-bg,#fff);border-radius:var(--kw-radius,12px);box-shadow:0 8px 30px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden}' +
    '.panel[hidden]{display:none}' +
    '.head{background:var(--kw-accent,#2456c7);color:var(--kw-accent-ink,#fff);padding:10px 14px;display:flex;align-items:center;justify-content:space-between;font-weight:600}' +
    '.head button{background:none;border:0;color:inherit;font-size:20px;cursor:pointer;line-height:1}' +
    '.note{background:#fff4e0;color:#7a4b00;padding:8px 12px;font-size:13px}.note:empty{display:none}' +
    '.msgs{flex:1;overflow-y:auto;padding:10px;display:flex;flex-direction:column;gap:6px;list-style:none;margin:0}' +
    '.m{max-width:80%;padding:7px 10px;border-radius:10px;white-space:pre-wrap;overflow-wrap:anywhere}' +
    '.m.out{align-self:flex-start;background:#eef1f6}.m.in{align-self:flex-end;background:var(--kw-accent,#2456c7);color:var(--kw-accent-ink,#fff)}' +
    '.m.pending{opacity:.6}' +
    '.typing{min-height:18px;padding:0 12px;color:#667085;font-size:12px;font-style:italic}' +
    'form{display:flex;gap:6px;padding:8px;border-top:1px solid #e4e7ec}' +
    'form.pre{flex-direction:column;padding:12px;border:0}' +
    'input,textarea{font:inherit;border:1px solid #d0d5dd;border-radius:8px;padding:7px 9px;color:inherit;background:#fff}' +
    'textarea{flex:1;resize:none;height:40px}' +
    'label.c{display:flex;gap:6px;align-items:flex-start;font-size:12px}' +
    'button.send{background:var(--kw-accent,#2456c7);color:var(--kw-accent-ink,#fff);border:0;border-radius:8px;padding:0 14px;cursor:pointer;font:inherit}' +
    'form.pre button.send{padding:9px}' +
    '.err{color:#c62828;font-size:12px;min-height:16px;margin:0}';

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  var style = el('style');
  style.textContent = css;
  var bubble = el('button', { class: 'bubble', type: 'button', 'aria-label': S.open, part: 'bubble' });
  var icon = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  icon.setAttribute('viewBox', '0 0 24 24');
  icon.setAttribute('width', '26');
  icon.setAttribute('height', '26');
  icon.setAttribute('aria-hidden', 'true');
  var path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z');
  path.setAttribute('fill', 'currentColor');
  icon.appendChild(path);
  bubble.appendChild(icon);
  var badge = el('span', { class: 'badge' });
  bubble.appendChild(badge);
  var panel = el('section', { class: 'panel', hidden: '', role: 'dialog', 'aria-label': S.title });
  var head = el('div', { class: 'head' });
  head.appendChild(el('span', null, script.getAttribute('data-title') || S.title));
  var closeBtn = el('button', { type: 'button', 'aria-label': S.close }, '×');
  head.appendChild(closeBtn);
  var note = el('div', { class: 'note', role: 'status' });
  var list = el('ol', { class: 'msgs', 'aria-live': 'polite' });
  var typing = el('div', { class: 'typing' });
  var body = el('div');
  panel.appendChild(head);
  panel.appendChild(note);
  panel.appendChild(body);
  root.appendChild(style);
  root.appendChild(panel);
  root.appendChild(bubble);

  // The chat: list, typing line and the message form.
  var chat = el('div');
  chat.style.cssText = 'display:flex;flex-direction:column;flex:1;min-height:0';
  body.style.cssText = 'display:flex;flex-direction:column;flex:1;min-height:0';
  var form = el('form');
  var input = el('textarea', { 'aria-label': S.placeholder, placeholder: S.placeholder, maxlength: '4000' });
  var sendBtn = el('button', { class: 'send', type: 'submit' }, S.send);
  form.appendChild(input);
  form.appendChild(sendBtn);
  chat.appendChild(list);
  chat.appendChild(typing);
  chat.appendChild(form);

  function renderMessages() {
    list.textContent = '';
    state.messages.forEach(function (m) { list.appendChild(messageEl(m, false)); });
    state.outbox.forEach(function (o) { list.appendChild(messageEl({ dir: 'in', text: o.text }, true)); });
    list.scrollTop = list.scrollHeight;
  }
  function messageEl(m, pending) {
    return el('li', { class: 'm ' + m.dir + (pending ? ' pending' : '') }, m.text);
  }

  function showChat() {
    body.textContent = '';
    body.appendChild(chat);
    renderMessages();
    input.focus();
  }

  function showPrechat() {
    var f = el('form', { class: 'pre' });
    var name = el('input', { name: 'name', autocomplete: 'name', placeholder: S.name, 'aria-label': S.name });
    var contact = el('input', { name: 'contact', autocomplete: 'email', placeholder: S.contact, 'aria-label': S.contact });
    var consentBox = el('input', { type: 'checkbox', name: 'consent' });
    var consent = el('label', { class: 'c' });
    consent.appendChild(consentBox);
    consent.appendChild(document.createTextNode(S.consent));
    var err = el('p', { class: 'err', role: 'alert' });
    var go = el('button', { class: 'send', type: 'submit' }, S.start);
    [name, contact, consent, err, go].forEach(function (x) { f.appendChild(x); });
    f.addEventListener('submit', function (e) {
      e.preventDefault();
      var c = contact.value.trim();
      if (!state.online && !c) { err.textContent = S.need_contact; contact.focus(); return; }
      if (!consentBox.checked) { err.textContent = S.need_consent; return; }
      state.prechat = { name: name.value.trim() || undefined };
      if (c.indexOf('@') > 0) state.prechat.email = c;
      else if (c) state.prechat.phone = c;
      showChat();
      connect();
    });
    body.textContent = '';
    body.appendChild(f);
    name.focus();
  }

  function setNote() {
    note.textContent = !state.live && state.ws ? S.reconnecting : (!state.online ? S.offline : '');
  }

  // ---- socket ----------------------------------------------------------------------
  function connect() {
    if (state.ws) return;
    var ws;
    try { ws = new WebSocket(wsUrl); } catch (e) { return retry(); }
    state.ws = ws;
    setNote();
    ws.onopen = function () {
      var start = { type: 'start' };
      if (state.token) start.token = state.token;
      if (state.since) start.since = state.since;
      var p = state.prechat || {};
      if (p.name) start.name = p.name;
      if (p.email) start.email = p.email;
      if (p.phone) start.phone = p.phone;
      var iid = script.getAttribute('data-identity-id');
      var ihash = script.getAttribute('data-identity-hash');
      if (iid && ihash) {
        start.identity = { id: iid, hash: ihash };
        if (script.getAttribute('data-name')) start.identity.name = script.getAttribute('data-name');
        if (script.getAttribute('data-email')) start.identity.email = script.getAttribute('data-email');
      }
      ws.send(JSON.stringify(start));
    };
    ws.onmessage = function (ev) {
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      onFrame(f);
    };
    ws.onclose = function (ev) {
      if (state.ws !== ws) return;
      state.ws = null;
      state.live = false;
      setNote();
      if (ev.code === 4002 || ev.code === 1008) return; // a broken page: do not hammer the hub
      retry(ev.code === 4029 ? 8 : 1);
    };
  }

  function retry(factor) {
    var wait = Math.min(10000, state.backoff * (factor || 1)) * (0.75 + Math.random() * 0.5);
    state.backoff = Math.min(10000, state.backoff * 2);
    setTimeout(connect, wait);
  }

  function onFrame(f) {
    if (f.type === 'ready') {
      state.token = f.token;
      state.live = true;
      state.backoff = 500;
      state.online = f.operators_online !== false;
      if (typeof f.seq === 'number' && !state.since) state.since = f.seq;
      state.prechat = null;
      save();
      setNote();
      // Messages sent while offline go again, with the same ids: stored once.
      state.outbox.forEach(function (o) { sendFrame(o); });
    } else if (f.type === 'message') {
      if (typeof f.seq === 'number' && f.seq > state.since) state.since = f.seq;
      var key = 'm' + f.id;
      var known = state.messages.some(function (m) { return m.key === key; });
      if (!known) {
        state.messages.push({ key: key, dir: f.direction === 'outbound' ? 'out' : 'in', text: f.text || '', at: f.sent_at });
        if (f.direction === 'outbound') {
          state.typingUntil = 0;
          typing.textContent = '';
          if (!state.open) { state.unread += 1; badge.textContent = String(state.unread); }
        }
      }
      save();
      if (state.open) renderMessages();
    } else if (f.type === 'ack') {
      var o = null;
      state.outbox = state.outbox.filter(function (x) { if (x.cid === f.id) { o = x; return false; } return true; });
      if (o) {
        var k = 'm' + f.message_id;
        if (!state.messages.some(function (m) { return m.key === k; })) {
          state.messages.push({ key: k, dir: 'in', text: o.text, at: new Date().toISOString() });
        }
      }
      save();
      if (state.open) renderMessages();
    } else if (f.type === 'typing') {
      state.typingUntil = Date.now() + 6000;
      typing.textContent = S.typing;
    } else if (f.type === 'error' && f.code === 'rate_limited') {
      note.textContent = S.too_fast;
    }
  }

  function sendFrame(o) {
    if (state.ws && state.live) {
      state.ws.send(JSON.stringify({ type: 'message', id: o.cid, client_msg_id: o.cid, text: o.text }));
    }
  }

  function randomId() {
    var b = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(b);
    return 'w' + Array.prototype.map.call(b, function (x) { return ('0' + x.toString(16)).slice(-2); }).join('');
  }

  form.addEventListener('submit', function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    var o = { cid: randomId(), text: text };
    state.outbox.push(o);
    save();
    input.value = '';
    renderMessages();
    sendFrame(o);
    if (!state.ws) connect();
  });
  input.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event('submit', { cancelable: true }));
    }
  });
  var lastTyping = 0;
  input.addEventListener('input', function () {
    if (state.live && Date.now() - lastTyping > 3000) {
      lastTyping = Date.now();
      state.ws.send('{"type":"typing"}');
    }
  });
  setInterval(function () {
    if (state.typingUntil && Date.now() > state.typingUntil) { state.typingUntil = 0; typing.textContent = ''; }
  }, 1000);

  function open() {
    state.open = true;
    state.unread = 0;
    badge.textContent = '';
    panel.removeAttribute('hidden');
    bubble.setAttribute('aria-label', S.close);
    if (state.token || state.messages.length) {
      showChat();
      connect();
    } else {
      showPrechat();
    }
  }
  function close() {
    state.open = false;
    panel.setAttribute('hidden', '');
    bubble.setAttribute('aria-label', S.open);
  }
  bubble.addEventListener('click', function () { state.open ? close() : open(); });
  closeBtn.addEventListener('click', close);

  function mount() {
    document.body.appendChild(host);
    // A returning visitor hears replies even with the panel closed.
    if (state.token) connect();
  }
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount);

  window.KommutatorWidget = { open: open, close: close };
})();
