// The intake wizard: who wrote or called, really? Search clients by phone, email, name or
// messenger id; link the inquiry to the client found (and to one of their Interests or a
// new one), or create the client (or a lead) from it. A modal dialog: Escape closes it,
// everything is reachable by keyboard.
//
// Linking an inquiry from a lead to a client either merges the lead into the client (its
// history, identities and Interests move: `POST /leads/{id}/convert`) or moves only this
// dialog, optionally with the sender's identity (`PATCH /dialogs/{id}`).

import { all, api } from './api.js';
import { h, replace } from './dom.js';
import { t } from './i18n.js';

const MODES = ['phone', 'email', 'name', 'telegram', 'vk', 'whatsapp'];

/** What an operator typed, guessed: an email, a phone number, else a name. */
export function guessMode(text) {
  const s = text.trim();
  if (s.includes('@')) return 'email';
  if (/^[+\d][\d\s()\-.]{4,}$/.test(s)) return 'phone';
  return 'name';
}

/** The clients search query for `mode` and `text`. */
export function searchQuery(mode, text) {
  const v = encodeURIComponent(text.trim());
  switch (mode) {
    case 'phone': return `phone=${v}`;
    case 'email': return `email=${v}`;
    case 'name': return `q=${v}`;
    default: return `messenger=${mode}&messenger_id=${v}`;
  }
}

export class IntakeWizard {
  /**
   * `dialog`: the dialog record; `party`: its lead or client record (or null);
   * `lastText`: the customer's last message, the default title of a new Interest.
   * `onDone(message)` is called after a successful link.
   */
  constructor(dialog, party, lastText, { onDone }) {
    this.d = dialog;
    this.party = party;
    this.lastText = (lastText || '').replace(/\s+/g, ' ').trim().slice(0, 120);
    this.onDone = onDone;
    this.results = [];
    this.chosen = null;
    this.busy = false;
  }

  open() {
    const old = document.getElementById('intake');
    if (old) old.remove();
    this.el = h('dialog', { id: 'intake', class: 'intake', 'aria-labelledby': 'intake-title' });
    this.el.addEventListener('close', () => this.el.remove());
    document.body.append(this.el);
    this.renderSearch();
    this.el.showModal();
    this.queryEl.focus();
    if (this.queryEl.value) this.search();
  }

  close() {
    if (this.el && this.el.open) this.el.close();
  }

  /** The search a lead suggests: its phone, else its email, else its name. */
  prefill() {
    const p = this.party;
    if (!p) return { mode: 'phone', text: '' };
    if (this.d.lead_id && p.phone) return { mode: 'phone', text: p.phone };
    if (this.d.lead_id && p.email) return { mode: 'email', text: p.email };
    return { mode: 'name', text: p.company_name || p.name || '' };
  }

  renderSearch() {
    const pre = this.prefill();
    this.modeEl = h('select', { id: 'intake-mode', 'aria-label': t('intake.by') },
      MODES.map((m) => h('option', { value: m, selected: m === pre.mode }, t(`intake.mode.${m}`))));
    this.queryEl = h('input', { id: 'intake-query', type: 'search', value: pre.text, 'aria-label': t('intake.query'), placeholder: t('intake.query') });
    this.queryEl.addEventListener('input', () => {
      if (this.modeEl.value === 'phone' || this.modeEl.value === 'email' || this.modeEl.value === 'name') {
        this.modeEl.value = guessMode(this.queryEl.value);
      }
    });
    const form = h('form', { class: 'row', id: 'intake-search' }, this.modeEl, this.queryEl,
      h('button', { type: 'submit', class: 'primary', id: 'intake-find' }, t('intake.find')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.search();
    });
    this.resultsEl = h('ul', { class: 'intake-results', id: 'intake-results', 'aria-live': 'polite' });
    this.stepEl = h('div', { class: 'intake-step' });
    this.errorEl = h('p', { class: 'form-error', role: 'alert', id: 'intake-error' });
    const current = this.party
      ? t(this.d.client_id ? 'intake.now_client' : 'intake.now_lead', this.party.name)
      : t('party.none');
    replace(this.el,
      h('header', { class: 'row' },
        h('h2', { id: 'intake-title' }, t('intake.title')),
        h('span', { class: 'spacer' }),
        h('button', { type: 'button', class: 'link', id: 'intake-close', onclick: () => this.close() }, t('party.cancel'))),
      h('p', { class: 'muted' }, current),
      form, this.resultsEl, this.stepEl, this.errorEl,
      h('div', { class: 'row intake-create' },
        h('button', { type: 'button', id: 'intake-new-client', onclick: () => this.renderNewClient() }, t('intake.new_client')),
        !this.d.client_id && !this.d.lead_id
          ? h('button', { type: 'button', id: 'intake-new-lead', onclick: () => this.createLead() }, t('intake.new_lead'))
          : null));
  }

  async search() {
    const text = this.queryEl.value.trim();
    if (!text) {
      this.queryEl.focus();
      return;
    }
    this.errorEl.textContent = '';
    replace(this.resultsEl, h('li', { class: 'muted' }, '…'));
    try {
      const page = await api('GET', `/api/v1/clients?${searchQuery(this.modeEl.value, text)}&limit=20`);
      this.results = page.items || [];
    } catch (e) {
      this.results = [];
      this.errorEl.textContent = e.status === 400 ? e.message : t('error.generic', e.message);
    }
    this.renderResults();
  }

  renderResults() {
    if (!this.results.length) {
      replace(this.resultsEl, h('li', { class: 'empty', id: 'intake-nothing' }, t('intake.nothing')));
      return;
    }
    replace(this.resultsEl, this.results.map((c) => h('li', {},
      h('button', {
        type: 'button', class: `intake-client${this.chosen && this.chosen.id === c.id ? ' chosen' : ''}`,
        dataset: { id: c.id }, 'aria-pressed': this.chosen && this.chosen.id === c.id ? 'true' : 'false',
        onclick: () => this.choose(c),
      }, h('span', { class: 'title' }, c.name),
      h('span', { class: 'muted' }, t(`intake.kind.${c.kind}`), c.id === this.d.client_id ? ` · ${t('intake.current')}` : '')))));
  }

  /** Step two: which Interest of the chosen client, and how to link. */
  async choose(client) {
    this.chosen = client;
    this.renderResults();
    let interests = [];
    try {
      interests = (await all(`/api/v1/interests?client_id=${client.id}`, 200)).filter((i) => i.status === 'open');
    } catch (e) {
      this.errorEl.textContent = t('error.generic', e.message);
    }
    const radios = [
      ...interests.map((i) => ({ value: String(i.id), label: i.title })),
      { value: 'new', label: t('intake.interest_new') },
      { value: '', label: t('intake.interest_none') },
    ];
    const pick = interests.some((i) => i.id === this.d.interest_id) ? String(this.d.interest_id)
      : interests.length ? String(interests[0].id) : 'new';
    const title = h('input', { id: 'intake-interest-title', value: this.lastText || t('interest.one'), 'aria-label': t('intake.interest_title') });
    const group = h('fieldset', { class: 'intake-interests' }, h('legend', {}, t('interest.list')),
      radios.map((r) => h('label', { class: 'radio' },
        h('input', { type: 'radio', name: 'intake-interest', value: r.value, checked: r.value === pick }),
        r.label, r.value === 'new' ? [' ', title] : null)));
    const isLead = !!this.d.lead_id;
    const merge = isLead ? h('input', { type: 'checkbox', id: 'intake-merge', checked: true }) : null;
    const remember = h('input', { type: 'checkbox', id: 'intake-remember', checked: true });
    // Merging moves the lead's identities anyway.
    const syncRemember = () => { remember.disabled = !!(merge && merge.checked); };
    if (merge) merge.addEventListener('change', syncRemember);
    syncRemember();
    const link = h('button', { type: 'submit', class: 'primary', id: 'intake-link' }, t('intake.link', client.name));
    const form = h('form', { id: 'intake-link-form' }, group,
      isLead ? h('label', { class: 'check' }, merge, t('intake.merge')) : null,
      this.d.identity_id ? h('label', { class: 'check' }, remember, t('intake.remember')) : null,
      h('div', { class: 'row' }, link));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const choice = (form.querySelector('input[name="intake-interest"]:checked') || {}).value || '';
      await this.run(link, () => this.link(client, choice, title.value.trim(), merge && merge.checked, remember.checked));
    });
    replace(this.stepEl, form);
    link.focus();
  }

  /** Links the dialog to `client`, with the Interest chosen (an id, `new` or none). */
  async link(client, choice, title, merge, remember) {
    const d = this.d;
    if (merge && d.lead_id) {
      // The whole lead goes into the client: identities, Interests, dialogs, Feed.
      await api('POST', `/api/v1/leads/${d.lead_id}/convert`, { client_id: client.id });
    }
    let interestId = null;
    if (choice === 'new') {
      const interest = await api('POST', '/api/v1/interests', {
        client_id: client.id, title: title || t('interest.one'), shared: true, source: d.channel,
      });
      interestId = interest.id;
    } else if (choice) {
      interestId = Number(choice);
    }
    const patch = {};
    if (!(merge && d.lead_id) && d.client_id !== client.id) {
      patch.client_id = client.id;
      if (remember && d.identity_id) patch.move_identity = true;
    }
    if (interestId !== null) patch.interest_id = interestId;
    if (Object.keys(patch).length) await api('PATCH', `/api/v1/dialogs/${d.id}`, patch);
    return t('intake.linked', client.name);
  }

  renderNewClient() {
    const p = this.party || {};
    const kind = h('select', { id: 'intake-client-kind', 'aria-label': t('intake.kind') },
      ['person', 'company'].map((k) => h('option', { value: k, selected: (p.company_name ? 'company' : 'person') === k }, t(`intake.kind.${k}`))));
    const name = h('input', { id: 'intake-client-name', required: true, value: p.company_name || p.name || '', 'aria-label': t('intake.name'), placeholder: t('intake.name') });
    const save = h('button', { type: 'submit', class: 'primary', id: 'intake-client-save' }, t('intake.create'));
    const form = h('form', { id: 'intake-client-form', class: 'row' }, kind, name, save);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!name.value.trim()) {
        name.focus();
        return;
      }
      await this.run(save, () => this.createClient(kind.value, name.value.trim()));
    });
    replace(this.stepEl, form);
    name.focus();
  }

  async createClient(kind, name) {
    const d = this.d;
    if (d.lead_id) {
      // The lead becomes the client, with everything it had.
      await api('POST', `/api/v1/leads/${d.lead_id}/convert`, { kind, name });
    } else {
      const client = await api('POST', '/api/v1/clients', { kind, name });
      await api('PATCH', `/api/v1/dialogs/${d.id}`, d.identity_id ? { client_id: client.id, move_identity: true } : { client_id: client.id });
    }
    return t('intake.created', name);
  }

  async createLead() {
    const q = this.queryEl.value.trim();
    const mode = this.modeEl.value;
    const input = { name: mode === 'name' && q ? q : undefined };
    if (mode === 'phone' && q) input.phone = q;
    if (mode === 'email' && q) input.email = q;
    await this.run(null, async () => {
      const lead = await api('POST', '/api/v1/leads', input);
      await api('PATCH', `/api/v1/dialogs/${this.d.id}`, { lead_id: lead.id });
      return t('intake.created', lead.name);
    });
  }

  /** Runs one step with its button disabled; a refusal is shown, success closes the wizard. */
  async run(button, step) {
    if (this.busy) return;
    this.busy = true;
    if (button) button.disabled = true;
    this.errorEl.textContent = '';
    try {
      const msg = await step();
      this.close();
      this.onDone(msg);
    } catch (e) {
      this.errorEl.textContent = e.status === 403 || e.status === 404 ? t('error.forbidden') : t('error.generic', e.message);
      if (button) button.disabled = false;
    } finally {
      this.busy = false;
    }
  }
}
