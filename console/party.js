// The client panel beside a dialog: who it is (client or lead), how to reach them, and
// their Feed, live: notes, tasks, messages, calls, Interests. Quick actions add a note or a
// task; they appear in the Feed at once, here and in every other console watching.

import { all, api } from './api.js';
import { h, randomId, replace, richText, shortTime } from './dom.js';
import { lang, t } from './i18n.js';
import { InterestCard, money } from './interest.js';

const KINDS = ['note', 'task', 'message', 'email', 'call', 'meeting', 'interest'];
const REFRESH_DEBOUNCE_MS = 120;

// The mailboxes the hub can write from (read once per page; none: no Email action).
let mailboxes = null;
function loadMailboxes() {
  if (!mailboxes) {
    mailboxes = api('GET', '/api/v1/channels/outgoing')
      .then((list) => list.filter((c) => c.to === 'email'))
      .catch(() => {
        mailboxes = null;
        return [];
      });
  }
  return mailboxes;
}

export class PartyPanel {
  /**
   * `party`: `{ type: 'client' | 'lead', id }`. The panel follows the party's topic on
   * `live` from the moment it reads the Feed, so nothing written in between is missed.
   */
  constructor(el, live, party, { onError, userName, onOpenCard, onDial }) {
    this.el = el;
    this.live = live;
    this.party = party;
    this.topic = `${party.type}:${party.id}`;
    this.onError = onError;
    this.userName = userName || ((id) => `#${id}`);
    this.onOpenCard = onOpenCard || null;
    this.onDial = onDial || null;
    this.interests = [];
    this.card = null;
    this.kind = '';
    this.record = null;
    this.feed = [];
    this.timer = null;
    this.form = null;
    this.listener = (e) => {
      const f = e.detail;
      if (!f.ephemeral && (f.topics || []).includes(this.topic)) this.refreshSoon();
    };
    // Offline, a refresh would only fail: it waits for the connection to come back.
    this.stale = false;
    this.stateListener = () => {
      if (this.live.state === 'live' && this.stale) this.refreshSoon();
    };
  }

  async start() {
    this.live.addEventListener('event', this.listener);
    this.live.addEventListener('state', this.stateListener);
    this.render();
    const pos = this.live.position;
    await Promise.all([this.loadRecord(), this.loadFeed(), this.loadInterests()]);
    this.live.follow([this.topic], pos);
  }

  stop() {
    clearTimeout(this.timer);
    if (this.card) this.card.stop();
    this.card = null;
    this.live.removeEventListener('event', this.listener);
    this.live.removeEventListener('state', this.stateListener);
    this.live.unfollow(this.topic);
  }

  async loadRecord() {
    try {
      this.record = await api('GET', `/api/v1/${this.party.type}s/${this.party.id}`);
    } catch (e) {
      this.onError(e);
    }
    this.renderHead();
  }

  async loadInterests() {
    try {
      this.interests = await all(`/api/v1/interests?${this.party.type}_id=${this.party.id}`, 200);
    } catch (e) {
      this.onError(e);
    }
    this.renderInterests();
  }

  /** Shows the Interest card in place of the panel (back returns to the party). */
  openInterest(id) {
    if (this.card) this.card.stop();
    this.card = new InterestCard(this.el, this.live, id, {
      userName: this.userName,
      onError: this.onError,
      onBack: () => {
        if (this.card) this.card.stop();
        this.card = null;
        this.render();
        this.loadInterests();
      },
    });
    this.card.start();
  }

  async loadFeed() {
    const q = this.kind ? `?kinds=${this.kind}` : '';
    try {
      this.feed = await all(`/api/v1/${this.party.type}s/${this.party.id}/feed${q}`, 400);
    } catch (e) {
      this.onError(e);
    }
    this.renderFeed();
  }

  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.live.state !== 'live') {
        this.stale = true;
        return;
      }
      this.stale = false;
      if (this.card) return;
      this.loadFeed();
      this.loadRecord();
      this.loadInterests();
    }, REFRESH_DEBOUNCE_MS);
  }

  async add(kind, subject, body, plannedAt) {
    const input = { kind, subject, [`${this.party.type}_id`]: this.party.id };
    if (body) input.body = body;
    if (plannedAt) input.planned_at = new Date(plannedAt).toISOString();
    await api('POST', '/api/v1/interactions', input);
    // The event refreshes every console watching, this one included; refreshing now too
    // shows it even while the socket reconnects.
    this.refreshSoon();
  }

  render() {
    if (this.card) {
      this.card.el = this.el;
      this.card.render();
      return;
    }
    this.headEl = h('div', { class: 'party-head', id: 'party-head' });
    this.interestsEl = h('ul', { class: 'interests', id: 'interests' });
    this.actionsEl = h('div', { class: 'party-actions' },
      h('button', { id: 'add-note', onclick: () => this.openForm('note') }, t('party.add_note')),
      h('button', { id: 'add-task', onclick: () => this.openForm('task') }, t('party.add_task')),
      h('button', { id: 'add-plan', onclick: () => this.openForm('plan') }, t('party.plan')),
      this.emailAction = h('button', { id: 'add-email', hidden: true, onclick: () => this.openEmail() }, t('party.email')),
      this.party.type === 'client' && this.onOpenCard
        ? h('button', { id: 'open-card', class: 'link', onclick: () => this.onOpenCard(this.party.id) }, t('party.open_card'))
        : null);
    this.formEl = h('div', { class: 'party-form' });
    const filter = h('select', { id: 'feed-filter', 'aria-label': t('feed.filter') },
      h('option', { value: '' }, t('feed.all')),
      KINDS.map((k) => h('option', { value: k, selected: this.kind === k }, t(`feed.kind.${k}`))));
    filter.addEventListener('change', () => {
      this.kind = filter.value;
      this.loadFeed();
    });
    this.feedEl = h('ol', { class: 'feed', id: 'feed', 'aria-live': 'polite' });
    replace(this.el, this.headEl, this.actionsEl, this.formEl,
      h('h3', {}, t('interest.list')), this.interestsEl,
      h('div', { class: 'feed-head' }, h('h3', {}, t('feed.title')), filter), this.feedEl);
    this.renderHead();
    this.renderInterests();
    this.renderFeed();
  }

  renderInterests() {
    if (!this.interestsEl || this.card) return;
    if (!this.interests.length) {
      replace(this.interestsEl, h('li', { class: 'empty' }, t('interest.none')));
      return;
    }
    replace(this.interestsEl, this.interests.map((i) => h('li', {},
      h('button', {
        type: 'button', class: `interest-row st-${i.status}`, dataset: { id: i.id },
        onclick: () => this.openInterest(i.id),
      },
      h('span', { class: 'title' }, i.title),
      h('span', { class: 'muted' }, `${t(`interest.status.${i.status}`)} · ${money(i.amount_minor, i.currency)}`)))));
  }

  /** The party's email addresses. */
  emails() {
    const r = this.record;
    if (!r) return [];
    if (this.party.type === 'lead') return r.email ? [r.email] : [];
    return (r.identities || []).filter((i) => i.kind === 'email').map((i) => i.value);
  }

  /** Shows the Email action when there is a mailbox to write from and an address to write to. */
  async showEmailAction() {
    const boxes = await loadMailboxes();
    if (this.emailAction) this.emailAction.hidden = !(boxes.length && this.emails().length);
  }

  /** A new email to the party: a dialog on the mailbox, then the message; it goes out like any reply. */
  async openEmail() {
    const boxes = await loadMailboxes();
    const emails = this.emails();
    if (!boxes.length || !emails.length) return;
    const to = h('select', { id: 'email-to', 'aria-label': t('party.email_to') }, emails.map((e) => h('option', { value: e }, e)));
    const from = boxes.length > 1
      ? h('select', { id: 'email-from', 'aria-label': t('party.email_from') }, boxes.map((b) => h('option', { value: b.connector_id }, b.connector_id)))
      : null;
    const subject = h('input', { id: 'email-subject', required: true, 'aria-label': t('party.subject'), placeholder: t('party.subject') });
    const body = h('textarea', { id: 'email-body', rows: 5, required: true, 'aria-label': t('party.email_text'), placeholder: t('party.email_text') });
    const error = h('p', { class: 'form-error', role: 'alert' });
    const send = h('button', { type: 'submit', class: 'primary', id: 'email-send' }, t('party.email_send'));
    const form = h('form', { id: 'email-form' }, to, from, subject, body, error,
      h('div', { class: 'row' }, send,
        h('button', { type: 'button', class: 'link', onclick: () => replace(this.formEl) }, t('party.cancel'))));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!subject.value.trim()) { subject.focus(); return; }
      if (!body.value.trim()) { body.focus(); return; }
      send.disabled = true;
      try {
        const box = boxes.find((b) => !from || b.connector_id === from.value) || boxes[0];
        const identity = await api('GET', `/api/v1/identities/lookup?kind=email&value=${encodeURIComponent(to.value)}`);
        const dialog = await api('POST', '/api/v1/dialogs', {
          channel: box.channel,
          connector_id: box.connector_id,
          external_thread_id: `hub-${randomId()}`,
          identity_id: identity.id,
          [`${this.party.type}_id`]: this.party.id,
          subject: subject.value.trim(),
        });
        await api('POST', `/api/v1/dialogs/${dialog.id}/messages`, { external_id: randomId(), body: body.value.trim() });
        replace(this.formEl);
        this.refreshSoon();
      } catch (err) {
        error.textContent = t('error.generic', err.message);
        send.disabled = false;
      }
    });
    form.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') replace(this.formEl);
    });
    replace(this.formEl, form);
    subject.focus();
  }

  renderHead() {
    this.showEmailAction();
    if (!this.headEl) return;
    const r = this.record;
    if (!r) {
      replace(this.headEl, h('h3', {}, '…'));
      return;
    }
    const contacts = [];
    if (this.party.type === 'lead') {
      if (r.phone) contacts.push({ kind: 'phone', value: r.phone });
      if (r.email) contacts.push({ kind: 'email', value: r.email });
    } else {
      for (const i of r.identities || []) contacts.push(i);
    }
    replace(this.headEl,
      h('h3', { id: 'party-name' }, r.name),
      h('span', { class: 'badge' }, t(this.party.type === 'lead' ? 'party.lead' : 'party.client')),
      r.company_name ? h('p', { class: 'muted' }, r.company_name) : null,
      h('ul', { class: 'contacts' }, contacts.map((c) => h('li', {}, c.value,
        c.kind === 'phone' && this.onDial
          ? h('button', {
            type: 'button', class: 'link dial', title: t('call.dial', c.value), 'aria-label': t('call.dial', c.value),
            dataset: { number: c.value }, onclick: () => this.onDial(c.value),
          }, '☎')
          : null))));
  }

  renderFeed() {
    if (!this.feedEl) return;
    if (!this.feed.length) {
      replace(this.feedEl, h('li', { class: 'empty' }, t('feed.empty')));
      return;
    }
    replace(this.feedEl, this.feed.map((e) => h('li', { class: `feed-item fk-${e.kind}`, dataset: { kind: e.kind, id: e.id } },
      h('div', { class: 'feed-line' },
        h('span', { class: 'feed-kind' }, t(`feed.kind.${e.kind}`)),
        h('time', { datetime: e.occurred_at }, shortTime(e.occurred_at, lang()))),
      h('div', { class: 'feed-title' }, e.title),
      e.preview ? h('div', { class: 'feed-preview' }, richText(e.preview)) : null)));
  }

  /** `kind`: `note`, `task`, or `plan` (a call or meeting planned for a time). */
  openForm(kind) {
    const subject = h('input', { id: `${kind}-subject`, required: true, 'aria-label': t('party.subject'), placeholder: t('party.subject') });
    const body = kind === 'note' || kind === 'plan'
      ? h('textarea', { id: `${kind}-body`, rows: kind === 'note' ? 3 : 2, placeholder: t('party.note_text'), 'aria-label': t('party.note_text') }) : null;
    const what = kind === 'plan'
      ? h('select', { id: 'plan-kind', 'aria-label': t('party.plan_kind') },
        ['call', 'meeting'].map((k) => h('option', { value: k }, t(`feed.kind.${k}`))))
      : null;
    const due = kind === 'task' || kind === 'plan'
      ? h('input', { id: `${kind}-due`, type: 'datetime-local', required: kind === 'plan', 'aria-label': t(kind === 'plan' ? 'party.when' : 'party.due') })
      : null;
    const error = h('p', { class: 'form-error', role: 'alert' });
    const save = h('button', { type: 'submit', class: 'primary', id: `${kind}-save` }, t('party.save'));
    const form = h('form', { id: `${kind}-form` }, what, subject, body, due, error,
      h('div', { class: 'row' }, save,
        h('button', { type: 'button', class: 'link', onclick: () => replace(this.formEl) }, t('party.cancel'))));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!subject.value.trim()) {
        subject.focus();
        return;
      }
      if (kind === 'plan' && !due.value) {
        due.focus();
        return;
      }
      save.disabled = true;
      try {
        await this.add(what ? what.value : kind, subject.value.trim(), body && body.value.trim(), due && due.value);
        replace(this.formEl);
      } catch (err) {
        error.textContent = t('error.generic', err.message);
        save.disabled = false;
      }
    });
    form.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') replace(this.formEl);
    });
    replace(this.formEl, form);
    subject.focus();
  }
}
