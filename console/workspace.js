// The Dialogs workspace: lists (mine, department queue, all), the open dialog with its
// messages live, and the reply box. Everything new arrives over the operator socket; a
// reconnect resumes where each topic left off, so nothing is missed and nothing repeats.

import { all, api } from './api.js';
import { elapsed, h, mailFrame, randomId, replace, richText, shortTime } from './dom.js';
import { lang, t } from './i18n.js';
import { Canned } from './canned.js';
import { Live } from './live.js';
import * as notify from './notify.js';
import { Callbacks } from './callbacks.js';
import { CallPopups, dial } from './calls.js';
import { Hints } from './hint.js';
import { Suggestions } from './suggest.js';
import { ClientCardView } from './client.js';
import { IntakeWizard } from './intake.js';
import { PartyPanel } from './party.js';
import { SupervisorView } from './supervisor.js';

/** Seconds a customer should wait at most for an answer; the waiting time is coloured against it. */
const REACTION_TARGET_SECS = 120;
/** Messages rendered at first; "show earlier" adds as many again. */
const MESSAGE_WINDOW = 200;
/** Height of a row of the dialog list (px; fixed, for the windowed list: see app.css). */
const ROW_PX = 60;
/** Rows rendered above and below the visible ones. */
const OVERSCAN = 8;

const CHANNEL_LABELS = {
  api: 'API', widget: 'Chat', telegram: 'TG', vk: 'VK', whatsapp: 'WA', email: '@', phone: '☎', form: 'Form',
};

export class Workspace {
  constructor(root, user, { onLogout, onLang }) {
    this.root = root;
    this.me = user;
    this.onLogout = onLogout;
    this.onLang = onLang;
    this.live = new Live();
    this.dialogs = new Map();
    this.previews = new Map();
    this.names = new Map();
    this.tab = 'mine';
    this.current = null;
    /** dialog id → Map(message id → message) */
    this.messages = new Map();
    /** dialog id → cursor of its next older page (null: none left) */
    this.older = new Map();
    /** client_msg_id → {dialog_id, text, message_id?} not yet confirmed by an event */
    this.outbox = new Map();
    this.typingUntil = 0;
    this.presence = 'online';
    this.loaded = false;
    /** user id → user (names of colleagues), and the departments. */
    this.users = new Map();
    this.departments = [];
    /** 'dialogs' or 'supervisor' */
    this.view = 'dialogs';
    this.supervisor = null;
    this.canned = new Canned(user);
    this.calls = new CallPopups(this);
    this.callbacks = new Callbacks(this);
    this.hints = new Hints(this);
    this.suggest = new Suggestions(this);
    this.renderQueued = false;
    this.readTimer = null;
  }

  get canSeeAll() {
    return this.me.role === 'admin' || this.me.role === 'supervisor';
  }

  /** Topics this console follows besides the open dialog. */
  baseTopics() {
    const out = [`user:${this.me.id}`];
    if (this.me.department_id) out.push(`dept:${this.me.department_id}`);
    if (this.me.role === 'admin') for (const d of this.departments) out.push(`dept:${d.id}`);
    return [...new Set(out)];
  }

  start() {
    this.render();
    this.live.addEventListener('state', () => this.renderConnection());
    this.live.addEventListener('hello', () => this.onHello());
    this.live.addEventListener('event', (e) => this.onEvent(e.detail));
    this.live.addEventListener('resync', (e) => this.onResync(e.detail));
    this.live.addEventListener('ended', () => window.dispatchEvent(new CustomEvent('kommutator:ended')));
    this.live.start();
    this.clock = setInterval(() => this.tick(), 1000);
  }

  stop() {
    clearInterval(this.clock);
    if (this.party) this.party.stop();
    this.live.stop();
  }

  async onHello() {
    if (!this.loaded) {
      // First connection: snapshot from this position, then live from it.
      this.loaded = true;
      const pos = this.live.position;
      await Promise.all([this.loadColleagues(), this.loadDialogs(), this.callbacks.load()]);
      this.live.follow(this.baseTopics(), pos);
      const m = location.hash.match(/^#\/dialogs\/(\d+)$/);
      if (m) this.open(Number(m[1]));
      else if (location.hash === '#/supervisor' && this.canSeeAll) this.showSupervisor();
      else if (location.hash === '#/callbacks') this.showCallbacks();
      else {
        const c = location.hash.match(/^#\/clients\/(\d+)$/);
        if (c) this.showClient(Number(c[1]));
      }
    }
    // A reconnect: the socket resumed every topic itself; replies still unconfirmed go again
    // (the same client_msg_id: stored at most once).
    for (const [cid, o] of this.outbox) {
      if (!o.message_id) this.sendReply(o.dialog_id, o.text, cid);
    }
    // Suggestions are not replayed: read them again for the open dialog.
    if (this.current !== null) this.suggest.load(this.current);
  }

  async loadColleagues() {
    try {
      const [users, deps] = await Promise.all([api('GET', '/api/v1/users'), api('GET', '/api/v1/departments')]);
      for (const u of users || []) this.users.set(u.id, u);
      this.departments = deps || [];
    } catch (_) { /* names are a nicety; ids stand in */ }
  }

  userName(id) {
    const u = this.users.get(id);
    return u ? (u.name || u.login) : `#${id}`;
  }

  async loadDialogs() {
    try {
      const items = await all('/api/v1/dialogs?status=open');
      for (const d of items) this.dialogs.set(d.id, d);
    } catch (e) {
      this.flash(t('error.generic', e.message));
    }
    this.queueRender();
  }

  onResync({ topic, until }) {
    this.flash(t('resync'));
    this.live.restart(topic, until);
    if (topic.startsWith('dialog:')) {
      const id = Number(topic.slice(7));
      this.messages.delete(id);
      if (this.current === id) this.loadMessages(id);
    } else {
      this.dialogs.clear();
      this.loadDialogs();
    }
  }

  onEvent(f) {
    const d = f.data || {};
    if (f.entity === 'dialog') {
      this.noticeNew(f, d);
      this.upsertDialog(d);
      // Assignments change operators' load.
      if (this.supervisor) this.supervisor.refreshSoon();
    } else if (f.entity === 'call') {
      this.calls.onCall(f);
      if (f.data && f.data.status === 'missed') this.callbacks.refreshSoon();
    } else if (f.entity === 'interaction') {
      this.callbacks.refreshSoon();
    } else if (f.entity === 'presence' || f.entity === 'routing') {
      if (this.supervisor) this.supervisor.refreshSoon();
    } else if (f.entity === 'message') {
      if (f.op === 'create') this.onMessage(d);
      else this.upsertMessage(d);
    } else if (f.entity === 'kb_suggestions') {
      this.suggest.onEvent(d);
    } else if (f.entity === 'typing' && f.op === 'customer' && d.dialog_id === this.current) {
      this.typingUntil = Date.now() + 6000;
      this.renderTyping();
    }
  }

  upsertDialog(d) {
    const old = this.dialogs.get(d.id);
    if (old && old.updated_at && d.updated_at && old.updated_at > d.updated_at) return;
    this.dialogs.set(d.id, { ...old, ...d });
    this.queueRender();
    if (d.id === this.current && this.view === 'dialogs') {
      this.renderHeader();
      this.showParty(this.dialogs.get(d.id));
    }
  }

  /** A sound (and a desktop notification when in the background) for a dialog new to me. */
  noticeNew(f, d) {
    if (!this.loaded) return;
    const old = this.dialogs.get(d.id);
    const mineNow = d.assignee_id === this.me.id && d.status === 'open';
    const mineBefore = old && old.assignee_id === this.me.id && old.status === 'open';
    const queuedNew = !old && d.status === 'open' && (d.assignee_id === null || d.assignee_id === undefined);
    if ((mineNow && !mineBefore) || queuedNew) {
      notify.tell(t('notify.new_dialog'), this.previews.get(d.id) || d.subject || d.channel, () => this.open(d.id));
    }
  }

  /** The client panel for dialog `d`'s client or lead (kept when it is the same one). */
  showParty(d) {
    const party = d && (d.client_id ? { type: 'client', id: d.client_id } : d.lead_id ? { type: 'lead', id: d.lead_id } : null);
    const same = this.party && party && this.party.party.type === party.type && this.party.party.id === party.id;
    if (same) return;
    if (this.party) this.party.stop();
    this.party = null;
    if (!party) {
      replace(this.partyEl, d ? h('p', { class: 'placeholder' }, t('party.none')) : null);
      return;
    }
    this.party = this.partyPanel(party);
    this.party.start();
  }

  partyPanel(party) {
    return new PartyPanel(this.partyEl, this.live, party, {
      userName: (id) => this.userName(id),
      onOpenCard: (id) => this.showClient(id),
      onDial: (number) => dial(number, party, (msg) => this.flash(msg)),
      // A network error is already told by the connection badge.
      onError: (e) => (e.code === 'network' ? null
        : this.flash(e.status === 403 || e.status === 404 ? t('error.forbidden') : t('error.generic', e.message))),
    });
  }

  onMessage(m) {
    const d = this.dialogs.get(m.dialog_id);
    // A message the dialog record already counts changes nothing there: the record of a
    // new dialog is written in the message's own transaction, and a snapshot read just
    // before a resume includes what the resume replays.
    const counted = d && d.updated_at && Date.parse(m.created_at) <= Date.parse(d.updated_at);
    if (d && !counted) {
      if (!d.last_message_at || m.sent_at > d.last_message_at) d.last_message_at = m.sent_at;
      if (m.direction === 'inbound') {
        d.unread = (d.unread || 0) + 1;
        if (!d.waiting_since) d.waiting_since = m.created_at;
      } else {
        d.unread = 0;
        d.waiting_since = null;
      }
    } else {
      this.fetchDialog(m.dialog_id);
    }
    if (m.body) this.previews.set(m.dialog_id, m.body);
    this.upsertMessage(m);
    if (m.dialog_id === this.current && m.direction === 'inbound') {
      this.typingUntil = 0;
      this.renderTyping();
      this.markReadSoon();
    }
    this.queueRender();
  }

  async fetchDialog(id) {
    try {
      const d = await api('GET', `/api/v1/dialogs/${id}`);
      this.upsertDialog(d);
    } catch (_) { /* not ours to see */ }
  }

  upsertMessage(m) {
    const list = this.messages.get(m.dialog_id);
    if (!list) return;
    const known = list.get(m.id);
    list.set(m.id, { ...known, ...m });
    for (const [cid, o] of this.outbox) {
      if (o.message_id === m.id) this.outbox.delete(cid);
    }
    if (m.dialog_id === this.current) this.renderMessage(list.get(m.id));
  }

  // ---- actions ----------------------------------------------------------------------

  async open(id) {
    if (this.view !== 'dialogs') this.showDialogs();
    if (this.current === id) return;
    if (this.current !== null) this.live.unfollow(`dialog:${this.current}`);
    this.current = id;
    this.shownMessages = MESSAGE_WINDOW;
    if (this.dialogs.has(id)) this.showParty(this.dialogs.get(id));
    else this.fetchDialog(id);
    this.typingUntil = 0;
    location.hash = `#/dialogs/${id}`;
    this.renderMain();
    this.queueRender();
    this.suggest.load(id);
    await this.loadMessages(id);
    this.markReadSoon();
  }

  async loadMessages(id) {
    const pos = this.live.position;
    try {
      // Only the newest page; older ones come with "show earlier".
      const page = await api('GET', `/api/v1/dialogs/${id}/messages?order=desc&limit=${MESSAGE_WINDOW}`);
      const map = new Map();
      for (const m of (page.items || []).reverse()) map.set(m.id, m);
      const old = this.messages.get(id);
      if (old) for (const [k, v] of old) if (!map.has(k)) map.set(k, v);
      this.messages.set(id, map);
      this.older.set(id, page.next_cursor || null);
      const last = page.items && page.items[page.items.length - 1];
      if (last && last.body) this.previews.set(id, last.body);
    } catch (e) {
      const text = e.status === 403 || e.status === 404 ? t('error.forbidden') : t('error.generic', e.message);
      if (this.current === id) {
        this.current = null;
        replace(this.mainEl, h('p', { class: 'placeholder', id: 'dialog-error', role: 'alert' }, text));
      } else {
        this.flash(text);
      }
      return;
    }
    this.live.follow([`dialog:${id}`], pos);
    if (this.current === id) this.renderMessages();
  }

  markReadSoon() {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => {
      const d = this.dialogs.get(this.current);
      if (!d || !d.unread || document.hidden) return;
      this.live.command({ type: 'read', dialog_id: d.id }).then(() => {
        d.unread = 0;
        this.queueRender();
      }).catch(() => {});
    }, 300);
  }

  sendReply(dialogId, text, cid = randomId()) {
    const entry = this.outbox.get(cid) || { dialog_id: dialogId, text };
    this.outbox.set(cid, entry);
    this.renderOutbox();
    this.live.command({ type: 'send', dialog_id: dialogId, client_msg_id: cid, text })
      .then((ack) => {
        entry.message_id = ack.message_id;
        const list = this.messages.get(dialogId);
        if (list && list.has(ack.message_id)) this.outbox.delete(cid);
        this.renderOutbox();
      })
      .catch((e) => {
        if (e.code === 'offline' || e.code === 'timeout') return; // sent again on reconnect
        this.outbox.delete(cid);
        this.renderOutbox();
        this.flash(t('reply.failed', e.message));
      });
  }

  async act(type, extra = {}) {
    if (this.current === null) return;
    try {
      await this.live.command({ type, dialog_id: this.current, ...extra });
    } catch (e) {
      this.flash(e.code === 'forbidden' ? t('error.forbidden') : t('error.generic', e.message));
    }
  }

  /** Missed calls to return, in the middle. */
  showCallbacks() {
    if (this.supervisor) this.supervisor.stop();
    this.supervisor = null;
    if (this.clientCard) this.clientCard.stop();
    this.clientCard = null;
    this.view = 'callbacks';
    location.hash = '#/callbacks';
    this.callbacks.el = this.mainEl;
    this.callbacks.render();
    this.callbacks.refreshSoon();
    this.renderTop();
  }

  showSupervisor() {
    this.callbacks.el = null;
    if (this.clientCard) this.clientCard.stop();
    this.clientCard = null;
    this.view = 'supervisor';
    location.hash = '#/supervisor';
    this.supervisor = new SupervisorView(this.mainEl, this);
    replace(this.partyEl);
    this.supervisor.render();
    this.supervisor.load();
    this.renderTop();
  }

  /** The full client card in the middle, the client's Feed and Interests beside it. */
  showClient(id) {
    if (this.supervisor) this.supervisor.stop();
    this.supervisor = null;
    if (this.clientCard) this.clientCard.stop();
    this.callbacks.el = null;
    this.view = 'client';
    location.hash = `#/clients/${id}`;
    this.clientCard = new ClientCardView(this.mainEl, this, id, { onBack: () => this.showDialogs() });
    this.clientCard.start();
    if (!(this.party && this.party.party.type === 'client' && this.party.party.id === id)) {
      if (this.party) this.party.stop();
      this.party = this.partyPanel({ type: 'client', id });
      this.party.start();
    }
    this.renderTop();
  }

  showDialogs() {
    this.view = 'dialogs';
    if (this.supervisor) this.supervisor.stop();
    this.supervisor = null;
    if (this.clientCard) this.clientCard.stop();
    this.clientCard = null;
    this.callbacks.el = null;
    if (location.hash === '#/supervisor' || location.hash === '#/callbacks' || location.hash.startsWith('#/clients/')) {
      location.hash = this.current !== null ? `#/dialogs/${this.current}` : '';
    }
    this.renderMain();
    if (this.current !== null) this.showParty(this.dialogs.get(this.current));
    else if (this.party) {
      this.party.stop();
      this.party = null;
      replace(this.partyEl);
    }
    this.renderTop();
  }

  async setPresence(status) {
    try {
      await this.live.command({ type: 'presence', status });
      this.presence = status;
    } catch (e) {
      this.flash(t('error.generic', e.message));
    }
    this.renderTop();
  }

  // ---- rendering ----------------------------------------------------------------------

  render() {
    this.topEl = h('header', { class: 'top' });
    this.tabsEl = h('nav', { class: 'tabs', role: 'tablist' });
    this.listEl = h('ul', { class: 'dialog-list', id: 'dialog-list', role: 'listbox', 'aria-label': t('tab.mine') });
    this.rowEls = new Map();
    this.spacers = null;
    let scrollQueued = false;
    this.listEl.addEventListener('scroll', () => {
      if (scrollQueued) return;
      scrollQueued = true;
      requestAnimationFrame(() => {
        scrollQueued = false;
        this.renderWindow();
      });
    });
    this.mainEl = h('section', { class: 'dialog', id: 'dialog' });
    this.partyEl = h('aside', { class: 'party', id: 'party' });
    this.flashEl = h('div', { class: 'flash', role: 'status', id: 'flash' });
    replace(this.root, h('div', { class: 'workspace' },
      this.topEl,
      h('aside', { class: 'side' }, this.tabsEl, this.listEl),
      this.mainEl,
      this.partyEl,
      this.flashEl,
      this.calls.el));
    this.calls.render();
    this.renderTop();
    this.renderList();
    this.renderMain();
    if (this.party) {
      this.party.el = this.partyEl;
      this.party.render();
    }
  }

  renderTop() {
    const conn = h('span', { class: 'conn', id: 'conn' });
    replace(this.topEl,
      h('strong', { class: 'brand' }, t('app.title')),
      conn,
      this.canSeeAll
        ? h('button', {
          class: 'link', id: 'view-toggle',
          onclick: () => (this.view === 'supervisor' ? this.showDialogs() : this.showSupervisor()),
        }, t(this.view === 'supervisor' ? 'top.dialogs' : 'top.supervisor'))
        : null,
      h('button', {
        class: `link${this.view === 'callbacks' ? ' current' : ''}`, id: 'callbacks-toggle',
        onclick: () => (this.view === 'callbacks' ? this.showDialogs() : this.showCallbacks()),
      }, t('callbacks.title'), this.callbacks.mine() ? h('span', { class: 'count', id: 'callbacks-count' }, String(this.callbacks.mine())) : null),
      h('span', { class: 'spacer' }),
      notify.canAsk()
        ? h('button', { class: 'link', id: 'notify', onclick: async () => { await notify.ask(); this.renderTop(); } }, t('notify.enable'))
        : null,
      h('select', {
        id: 'presence', 'aria-label': 'presence',
        onchange: (e) => this.setPresence(e.target.value),
      },
      h('option', { value: 'online', selected: this.presence === 'online' }, t('presence.online')),
      h('option', { value: 'away', selected: this.presence === 'away' }, t('presence.away'))),
      h('span', { class: 'who', id: 'who' }, this.me.name || this.me.login),
      h('button', { class: 'link', id: 'lang', onclick: () => this.onLang() }, t('top.lang')),
      h('button', { class: 'link', id: 'logout', onclick: () => this.onLogout() }, t('top.logout')));
    this.renderConnection();
  }

  renderConnection() {
    const el = this.root.querySelector('#conn');
    if (!el) return;
    const s = this.live.state;
    el.dataset.state = s;
    el.textContent = t(s === 'live' ? 'conn.live' : s === 'connecting' ? 'conn.connecting' : 'conn.offline');
  }

  queueRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.renderList();
      if (this.supervisor) this.supervisor.render();
    });
  }

  visible() {
    const out = [];
    for (const d of this.dialogs.values()) {
      if (d.status !== 'open') continue;
      if (this.tab === 'mine' && d.assignee_id !== this.me.id) continue;
      if (this.tab === 'queue' && (d.assignee_id !== null && d.assignee_id !== undefined)) continue;
      out.push(d);
    }
    out.sort((a, b) => String(b.last_message_at || b.created_at).localeCompare(String(a.last_message_at || a.created_at)));
    return out;
  }

  renderList() {
    const tabs = ['mine', 'queue'];
    if (this.canSeeAll) tabs.push('all');
    const count = (tab) => {
      const keep = this.tab;
      this.tab = tab;
      const n = this.visible().length;
      this.tab = keep;
      return n;
    };
    replace(this.tabsEl, tabs.map((tab) => h('button', {
      role: 'tab', class: 'tab', id: `tab-${tab}`, 'aria-selected': String(this.tab === tab),
      onclick: () => { this.tab = tab; this.renderList(); },
    }, t(`tab.${tab}`), h('span', { class: 'count' }, String(count(tab))))));
    this.items = this.visible();
    this.renderWindow();
  }

  /**
   * Only the rows in view (and a few around) are in the DOM; spacers stand for the rest,
   * so a list of thousands of dialogs costs what a screenful does.
   */
  renderWindow() {
    const items = this.items || [];
    if (!items.length) {
      this.rowEls = new Map();
      replace(this.listEl, h('li', { class: 'empty' }, t('list.empty')));
      return;
    }
    const view = this.listEl.clientHeight || 800;
    const first = Math.max(0, Math.floor(this.listEl.scrollTop / ROW_PX) - OVERSCAN);
    const last = Math.min(items.length, first + Math.ceil(view / ROW_PX) + 2 * OVERSCAN);
    const focused = document.activeElement && this.listEl.contains(document.activeElement)
      ? Number(document.activeElement.dataset.id) : null;
    const top = this.listEl.scrollTop;
    // Rows are kept by dialog and updated in place, never swapped for new elements: a
    // render between the press and the release of a click (a name arriving, a new
    // message) must not swallow the click.
    const old = this.rowEls || new Map();
    this.rowEls = new Map();
    const rows = items.slice(first, last).map((d) => {
      const fresh = this.renderItem(d);
      const li = old.get(d.id);
      if (!li) {
        this.rowEls.set(d.id, fresh);
        return fresh;
      }
      li.className = fresh.className;
      li.setAttribute('aria-selected', fresh.getAttribute('aria-selected'));
      li.replaceChildren(...fresh.childNodes);
      this.rowEls.set(d.id, li);
      return li;
    });
    // Heights through the CSSOM: the page's CSP refuses `style` attributes.
    if (!this.spacers) {
      this.spacers = [h('li', { class: 'spacer-row', 'aria-hidden': 'true' }), h('li', { class: 'spacer-row', 'aria-hidden': 'true' })];
    }
    const [above, below] = this.spacers;
    above.style.height = `${first * ROW_PX}px`;
    below.style.height = `${(items.length - last) * ROW_PX}px`;
    const want = [above, ...rows, below];
    const same = this.listEl.children.length === want.length && want.every((el, i) => this.listEl.children[i] === el);
    if (!same) replace(this.listEl, want);
    this.listEl.scrollTop = top;
    if (focused) {
      const el = this.listEl.querySelector(`.dialog-item[data-id="${focused}"]`);
      if (el) el.focus({ preventScroll: true });
    }
  }

  renderItem(d) {
    const wait = d.waiting_since ? elapsed(d.waiting_since) : '';
    return h('li', {
      class: `dialog-item${d.id === this.current ? ' current' : ''}`,
      role: 'option', tabindex: 0, 'aria-selected': String(d.id === this.current),
      dataset: { id: d.id },
      onclick: () => this.open(d.id),
      onkeydown: (e) => this.listKey(e, d.id),
    },
    h('span', { class: `channel ch-${d.channel}`, title: d.channel }, CHANNEL_LABELS[d.channel] || d.channel.slice(0, 3)),
    h('span', { class: 'name' }, this.partyName(d)),
    d.unread ? h('span', { class: 'unread', title: 'unread' }, String(d.unread)) : null,
    h('span', { class: 'preview' }, this.previews.get(d.id) || d.subject || ''),
    wait ? h('span', { class: `wait ${waitClass(d.waiting_since)}`, dataset: { since: d.waiting_since } }, wait) : null);
  }

  listKey(e, id) {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      this.open(id);
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const items = this.items || [];
      const i = items.findIndex((d) => d.id === id) + (e.key === 'ArrowDown' ? 1 : -1);
      if (i < 0 || i >= items.length) return;
      const next = items[i].id;
      // Bring the row into the window if it is not rendered yet, then focus it.
      const y = i * ROW_PX;
      if (y < this.listEl.scrollTop) this.listEl.scrollTop = y;
      else if (y + ROW_PX > this.listEl.scrollTop + this.listEl.clientHeight) this.listEl.scrollTop = y + ROW_PX - this.listEl.clientHeight;
      this.renderWindow();
      const el = this.listEl.querySelector(`.dialog-item[data-id="${next}"]`);
      if (el) el.focus({ preventScroll: true });
    }
  }

  partyName(d) {
    const key = d.client_id ? `clients/${d.client_id}` : d.lead_id ? `leads/${d.lead_id}` : null;
    if (!key) return t('party.unknown');
    const known = this.names.get(key);
    if (typeof known === 'string') return known;
    if (!known) {
      this.names.set(key, api('GET', `/api/v1/${key}`).then((r) => {
        this.names.set(key, r.name || t('party.unknown'));
        this.queueRender();
        if (this.current === d.id) this.renderHeader();
      }).catch(() => this.names.set(key, t(d.client_id ? 'party.client' : 'party.lead'))));
    }
    return '…';
  }

  renderMain() {
    if (this.view === 'callbacks') {
      this.callbacks.el = this.mainEl;
      this.callbacks.render();
      return;
    }
    if (this.view === 'client') {
      if (this.clientCard) {
        this.clientCard.el = this.mainEl;
        this.clientCard.render();
      }
      return;
    }
    if (this.view === 'supervisor') {
      if (this.supervisor) {
        this.supervisor.el = this.mainEl;
        this.supervisor.render();
      }
      return;
    }
    if (this.current === null) {
      replace(this.mainEl, h('p', { class: 'placeholder' }, t('dialog.none')));
      return;
    }
    this.headerEl = h('div', { class: 'dialog-head' });
    this.msgsEl = h('ol', { class: 'messages', id: 'messages', 'aria-live': 'polite' });
    this.typingEl = h('p', { class: 'typing', id: 'typing' });
    this.outboxEl = h('ol', { class: 'outbox' });
    const text = h('textarea', { id: 'reply-text', rows: 3, 'aria-label': t('reply.send') });
    text.addEventListener('keydown', (e) => {
      if (this.suggest.onKey(e)) return;
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    let lastTyping = 0;
    text.addEventListener('input', () => {
      if (Date.now() - lastTyping > 3000 && this.live.state === 'live') {
        lastTyping = Date.now();
        this.live.raw({ type: 'typing', dialog_id: this.current });
      }
    });
    const manage = h('button', {
      type: 'button', class: 'link', id: 'canned-open', title: t('canned.manage'),
      onclick: () => this.toggleCanned(form),
    }, '/…');
    const form = h('form', { class: 'reply', id: 'reply' }, manage, text,
      h('button', { type: 'submit', class: 'primary', id: 'reply-send' }, t('reply.send')));
    this.canned.attach(text, form);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const body = text.value.trim();
      if (!body) return;
      const d = this.dialogs.get(this.current);
      if (d && d.status === 'closed') {
        this.flash(t('reply.closed'));
        return;
      }
      this.sendReply(this.current, body);
      text.value = '';
    });
    this.replyText = text;
    replace(this.mainEl, this.headerEl, this.msgsEl, this.outboxEl, this.typingEl, this.suggest.mount(), form);
    this.renderHeader();
    this.renderMessages();
    text.focus();
  }

  /** Opens or closes the canned responses manager above the reply box. */
  toggleCanned(form) {
    const open = this.mainEl.querySelector('#canned-manager');
    if (open) {
      open.remove();
      return;
    }
    const close = () => {
      const el = this.mainEl.querySelector('#canned-manager');
      if (el) el.remove();
      if (this.replyText) this.replyText.focus();
    };
    const el = this.canned.manager(close);
    form.before(el);
    const first = el.querySelector('#canned-shortcut');
    if (first) first.focus();
  }

  renderHeader() {
    if (!this.headerEl) return;
    const d = this.dialogs.get(this.current);
    if (!d) {
      replace(this.headerEl, h('h2', {}, `#${this.current}`));
      return;
    }
    const who = d.assignee_id ? t('dialog.assigned', this.userName(d.assignee_id)) : t('dialog.unassigned');
    replace(this.headerEl,
      h('h2', { id: 'dialog-title' }, this.partyName(d)),
      h('span', { class: `channel ch-${d.channel}` }, CHANNEL_LABELS[d.channel] || d.channel),
      h('span', { class: 'assignee' }, who),
      d.status === 'closed' ? h('span', { class: 'badge' }, t('dialog.closed')) : null,
      d.request_type
        ? h('span', {
          class: `badge rtype rt-${d.request_type}`, id: 'request-type',
          title: t(d.request_type_by === 'operator' ? 'rtype.by_operator' : 'rtype.by_classifier'),
        }, this.hints.name(d.request_type))
        : null,
      h('span', { class: 'spacer' }),
      h('button', { id: 'intake-open', title: t('intake.hint'), onclick: () => this.openIntake() }, t('dialog.intake')),
      !d.assignee_id && d.status === 'open'
        ? h('button', { id: 'take', onclick: () => this.act('assign', { user_id: this.me.id }) }, t('dialog.take')) : null,
      d.status === 'open'
        ? h('button', { id: 'transfer', onclick: () => this.openTransfer() }, t('dialog.transfer')) : null,
      d.status === 'open'
        ? h('button', { id: 'close', onclick: () => this.act('close') }, t('dialog.close'))
        : h('button', { id: 'reopen', onclick: () => this.act('reopen') }, t('dialog.reopen')));
    if (this.replyText) this.replyText.placeholder = t('reply.placeholder', d.channel);
  }

  /** The intake wizard for the open dialog: find the client, link, or create one. */
  openIntake() {
    const d = this.dialogs.get(this.current);
    if (!d) return;
    const record = this.party && this.party.record;
    const inbound = [...(this.messages.get(d.id) || new Map()).values()]
      .filter((m) => m.direction === 'inbound' && m.body).sort((a, b) => b.id - a.id);
    new IntakeWizard(d, record, inbound.length ? inbound[0].body : '', {
      onDone: (msg) => this.flash(msg),
    }).open();
  }

  /** The transfer form: to a colleague (online or not: routing rules apply) or to a department's queue. */
  openTransfer() {
    const select = h('select', { id: 'transfer-to', 'aria-label': t('transfer.to') },
      h('optgroup', { label: t('transfer.departments') },
        this.departments.map((d) => h('option', { value: `dept:${d.id}` }, d.name))),
      h('optgroup', { label: t('transfer.operators') },
        [...this.users.values()]
          .filter((u) => u.active !== false && u.id !== this.me.id && ['operator', 'manager', 'supervisor'].includes(u.role))
          .map((u) => h('option', { value: `user:${u.id}` }, u.name || u.login))));
    const form = h('form', { class: 'transfer', id: 'transfer-form' }, select,
      h('button', { type: 'submit', class: 'primary', id: 'transfer-go' }, t('transfer.go')),
      h('button', { type: 'button', class: 'link', onclick: () => form.remove() }, t('party.cancel')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const [kind, id] = select.value.split(':');
      await this.act('transfer', kind === 'dept' ? { department_id: Number(id) } : { user_id: Number(id) });
      form.remove();
    });
    form.addEventListener('keydown', (e) => { if (e.key === 'Escape') form.remove(); });
    const old = this.headerEl.querySelector('#transfer-form');
    if (old) old.remove();
    this.headerEl.append(form);
    select.focus();
  }

  renderMessages() {
    if (!this.msgsEl) return;
    const list = this.messages.get(this.current);
    if (!list) {
      replace(this.msgsEl);
      return;
    }
    const sorted = [...list.values()].sort((a, b) => a.id - b.id);
    const shown = this.shownMessages || MESSAGE_WINDOW;
    const from = Math.max(0, sorted.length - shown);
    replace(this.msgsEl, this.earlierEl(from), sorted.slice(from).map((m) => this.messageEl(m)));
    this.msgsEl.scrollTop = this.msgsEl.scrollHeight;
    this.renderOutbox();
  }

  /** The "show earlier" row: more from memory, else the next older page from the hub. */
  earlierEl(hidden) {
    const id = this.current;
    if (hidden === 0 && !this.older.get(id)) return null;
    return h('li', { class: 'earlier' }, h('button', {
      class: 'link', id: 'show-earlier', onclick: () => this.showEarlier(id),
    }, hidden > 0 ? t('dialog.earlier', hidden) : t('dialog.earlier_more')));
  }

  /** Adds up to a window of earlier messages above, keeping what is on screen in place. */
  async showEarlier(id) {
    const list = this.messages.get(id);
    if (!list || this.current !== id) return;
    let sorted = [...list.values()].sort((a, b) => a.id - b.id);
    let from = Math.max(0, sorted.length - (this.shownMessages || MESSAGE_WINDOW));
    if (from === 0 && this.older.get(id)) {
      try {
        const page = await api('GET', `/api/v1/dialogs/${id}/messages?order=desc&limit=${MESSAGE_WINDOW}&cursor=${encodeURIComponent(this.older.get(id))}`);
        for (const m of page.items || []) list.set(m.id, m);
        this.older.set(id, page.next_cursor || null);
      } catch (e) {
        this.flash(t('error.generic', e.message));
        return;
      }
      if (this.current !== id) return;
      sorted = [...list.values()].sort((a, b) => a.id - b.id);
      from = Math.max(0, sorted.length - (this.shownMessages || MESSAGE_WINDOW));
    }
    const next = Math.max(0, from - MESSAGE_WINDOW);
    this.shownMessages = sorted.length - next;
    const keep = this.msgsEl.scrollHeight - this.msgsEl.scrollTop;
    const old = this.msgsEl.querySelector('li.earlier');
    const rows = sorted.slice(next, from).map((m) => this.messageEl(m));
    const first = this.msgsEl.querySelector('li.msg');
    for (const r of rows) this.msgsEl.insertBefore(r, first);
    if (old) old.remove();
    const earlier = this.earlierEl(next);
    if (earlier) this.msgsEl.prepend(earlier);
    this.msgsEl.scrollTop = this.msgsEl.scrollHeight - keep;
  }

  renderMessage(m) {
    if (!this.msgsEl) return;
    const el = this.messageEl(m);
    const old = this.msgsEl.querySelector(`li[data-id="${m.id}"]`);
    if (old) {
      old.replaceWith(el);
      return;
    }
    const stick = this.msgsEl.scrollHeight - this.msgsEl.scrollTop - this.msgsEl.clientHeight < 80;
    // Keep id order: an event can arrive after a later message was rendered. New messages
    // are nearly always the last, so look from the end.
    let before = null;
    for (let li = this.msgsEl.lastElementChild; li && li.dataset.id; li = li.previousElementSibling) {
      if (Number(li.dataset.id) > m.id) before = li;
      else break;
    }
    this.msgsEl.insertBefore(el, before);
    if (stick) this.msgsEl.scrollTop = this.msgsEl.scrollHeight;
    this.renderOutbox();
  }

  messageEl(m) {
    const status = m.direction === 'outbound' ? t(`status.${m.delivery_status}`) : '';
    return h('li', { class: `msg ${m.direction}`, dataset: { id: m.id, status: m.delivery_status } },
      m.subject ? h('div', { class: 'subject' }, m.subject) : null,
      h('div', { class: 'body' }, richText(m.body || '')),
      m.quoted
        ? h('details', { class: 'quoted' }, h('summary', {}, t('msg.quoted')), h('div', { class: 'body' }, richText(m.quoted)))
        : null,
      m.has_html ? this.htmlPart(m) : null,
      this.hints.el(m),
      (m.attachments || []).length
        ? h('ul', { class: 'attachments' }, m.attachments.map((a) => h('li', {},
          a.url ? h('a', { href: a.url, target: '_blank', rel: 'noopener noreferrer nofollow' }, a.name || a.url) : (a.name || ''))))
        : null,
      h('div', { class: 'meta' },
        m.direction === 'inbound' && m.body
          ? h('button', {
            type: 'button', class: 'link to-interest', title: t('interest.from_message'),
            onclick: () => this.interestFrom(m),
          }, `+ ${t('interest.one')}`)
          : null,
        h('time', { datetime: m.sent_at }, shortTime(m.sent_at, lang())),
        status ? h('span', { class: `status st-${m.delivery_status}`, title: m.delivery_error || '' }, status) : null));
  }

  /** The formatted (HTML) version of a mail, built only when the operator opens it. */
  htmlPart(m) {
    const d = h('details', { class: 'html-part' }, h('summary', {}, t('msg.formatted')));
    d.addEventListener('toggle', () => {
      if (d.open && !d.querySelector('iframe')) d.append(mailFrame(m.id, m.subject || t('msg.formatted')));
    });
    return d;
  }

  /** One click: an Interest for the dialog's client or lead, titled by the message; the dialog is linked to it. */
  async interestFrom(m) {
    const d = this.dialogs.get(m.dialog_id);
    if (!d || (!d.client_id && !d.lead_id)) {
      this.flash(t('party.none'));
      return;
    }
    const title = (m.body || '').replace(/\s+/g, ' ').trim().slice(0, 120) || t('interest.one');
    const input = { title, shared: true, source: d.channel };
    if (d.client_id) input.client_id = d.client_id;
    else input.lead_id = d.lead_id;
    try {
      const interest = await api('POST', '/api/v1/interests', input);
      await api('PATCH', `/api/v1/dialogs/${d.id}`, { interest_id: interest.id }).catch(() => {});
      if (this.party) this.party.openInterest(interest.id);
    } catch (e) {
      this.flash(e.status === 403 ? t('error.forbidden') : t('error.generic', e.message));
    }
  }

  renderOutbox() {
    if (!this.outboxEl) return;
    const mine = [...this.outbox.values()].filter((o) => o.dialog_id === this.current
      && !(o.message_id && this.messages.get(this.current)?.has(o.message_id)));
    replace(this.outboxEl, mine.map((o) => h('li', { class: 'msg outbound pending' },
      h('div', { class: 'body' }, richText(o.text)),
      h('div', { class: 'meta' }, h('span', { class: 'status st-pending' }, t('status.pending'))))));
  }

  renderTyping() {
    if (!this.typingEl) return;
    this.typingEl.textContent = Date.now() < this.typingUntil ? t('typing.customer') : '';
  }

  tick() {
    if (this.supervisor) this.supervisor.tick();
    this.callbacks.tick();
    for (const el of this.listEl.querySelectorAll('.wait[data-since]')) {
      el.textContent = elapsed(el.dataset.since);
      el.className = `wait ${waitClass(el.dataset.since)}`;
    }
    this.renderTyping();
  }

  flash(text) {
    this.flashEl.textContent = text;
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => { this.flashEl.textContent = ''; }, 6000);
  }
}

function waitClass(since) {
  const s = (Date.now() - new Date(since).getTime()) / 1000;
  if (s >= REACTION_TARGET_SECS) return 'late';
  if (s >= REACTION_TARGET_SECS / 2) return 'soon';
  return 'ok';
}
