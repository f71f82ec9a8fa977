// The full client card (`#/clients/{id}`): the client's fields, the admin-defined custom
// fields included, the responsible manager, contact persons and channel identities, all
// editable in place. The Feed, the Interests and the quick actions stay in the panel beside
// it. Live: it follows the client's topic and re-reads itself when anyone changes it.

import { api } from './api.js';
import { h, replace } from './dom.js';
import { t } from './i18n.js';
import { dial } from './calls.js';

const REFRESH_DEBOUNCE_MS = 150;
const IDENTITY_KINDS = ['phone', 'email', 'telegram', 'vk', 'whatsapp'];
let fieldDefs = null;

async function loadFieldDefs() {
  if (!fieldDefs) {
    fieldDefs = api('GET', '/api/v1/custom-fields').catch((e) => {
      fieldDefs = null;
      throw e;
    });
  }
  return fieldDefs;
}

/** A refusal as the operator should read it: the field at fault when the API names one. */
function refusal(e) {
  if (e.status === 403 || e.status === 404) return t('error.forbidden');
  return t('error.generic', e.message);
}

export class ClientCardView {
  constructor(el, ws, id, { onBack }) {
    this.el = el;
    this.ws = ws;
    this.live = ws.live;
    this.id = id;
    this.topic = `client:${id}`;
    this.onBack = onBack;
    this.card = null;
    this.defs = [];
    this.editing = false;
    this.timer = null;
    this.listener = (e) => {
      const f = e.detail;
      if (f.ephemeral || !(f.topics || []).includes(this.topic)) return;
      if (['client', 'contact', 'identity'].includes(f.entity)) this.refreshSoon();
    };
  }

  async start() {
    this.live.addEventListener('event', this.listener);
    this.render();
    const pos = this.live.position;
    await this.load();
    this.live.follow([this.topic], pos);
  }

  stop() {
    clearTimeout(this.timer);
    this.live.removeEventListener('event', this.listener);
    this.live.unfollow(this.topic);
  }

  async load() {
    try {
      const [card, defs] = await Promise.all([api('GET', `/api/v1/clients/${this.id}`), loadFieldDefs().catch(() => [])]);
      this.card = card;
      this.defs = [...(defs || [])].sort((a, b) => a.position - b.position || a.id - b.id);
      this.error = null;
    } catch (e) {
      this.error = refusal(e);
    }
    this.render();
  }

  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      // An edit in progress is not overwritten; it is re-read after save or cancel.
      if (!this.editing) this.load();
    }, REFRESH_DEBOUNCE_MS);
  }

  render() {
    const back = h('button', { type: 'button', class: 'link', id: 'card-back', onclick: () => this.onBack() }, `← ${t('card.back')}`);
    if (this.error) {
      replace(this.el, back, h('p', { class: 'form-error', role: 'alert' }, this.error));
      return;
    }
    const c = this.card;
    if (!c) {
      replace(this.el, back, h('p', { class: 'placeholder' }, '…'));
      return;
    }
    // A live refresh rebuilds the card but keeps what the operator is typing: the contact
    // and identity forms are the same elements before and after, and so is the focus.
    const active = document.activeElement;
    this.fieldsEl = h('section', { class: 'card-section', id: 'card-fields' });
    this.contactsEl = h('section', { class: 'card-section', id: 'card-contacts' });
    this.identitiesEl = h('section', { class: 'card-section', id: 'card-identities' });
    replace(this.el, h('div', { class: 'client-card' },
      h('div', { class: 'row' }, back),
      h('h2', { id: 'card-name' }, c.name),
      h('p', { class: 'muted' }, t(`intake.kind.${c.kind}`), ' · ',
        c.responsible_id ? t('card.responsible_is', this.ws.userName(c.responsible_id)) : t('card.no_responsible')),
      this.fieldsEl, this.contactsEl, this.identitiesEl));
    this.renderFields();
    this.renderContacts();
    this.renderIdentities();
    if (active && active !== document.activeElement && active.isConnected) active.focus();
  }

  // ---- fields ---------------------------------------------------------------------------

  renderFields() {
    const c = this.card;
    if (this.editing) {
      this.renderFieldsForm();
      return;
    }
    const rows = [
      [t('intake.name'), c.name],
      [t('card.notes'), c.notes || '—'],
      ...this.defs.map((d) => [d.label, fieldText(d, c.custom_fields[d.key])]),
    ];
    replace(this.fieldsEl,
      h('div', { class: 'row' }, h('h3', {}, t('card.fields')), h('span', { class: 'spacer' }),
        h('button', { type: 'button', id: 'card-edit', onclick: () => { this.editing = true; this.renderFields(); } }, t('card.edit'))),
      h('dl', { class: 'fields' }, rows.map(([k, v], i) => [h('dt', {}, k), h('dd', { dataset: { field: i < 2 ? ['name', 'notes'][i] : this.defs[i - 2].key } }, v)])));
  }

  renderFieldsForm() {
    const c = this.card;
    const inputs = new Map();
    const name = h('input', { id: 'card-f-name', required: true, value: c.name, 'aria-label': t('intake.name') });
    const kind = h('select', { id: 'card-f-kind', 'aria-label': t('intake.kind') },
      ['person', 'company'].map((k) => h('option', { value: k, selected: c.kind === k }, t(`intake.kind.${k}`))));
    const notes = h('textarea', { id: 'card-f-notes', rows: 3, 'aria-label': t('card.notes') });
    notes.value = c.notes || '';
    const staff = [...this.ws.users.values()].filter((u) => u.active !== false && u.role !== 'api');
    const responsible = h('select', { id: 'card-f-responsible', 'aria-label': t('interest.responsible') },
      h('option', { value: '' }, '—'),
      staff.map((u) => h('option', { value: u.id, selected: u.id === c.responsible_id }, u.name || u.login)));
    const label = (text, input) => h('label', { class: 'field' }, h('span', {}, text), input);
    const custom = this.defs.map((d) => {
      const input = fieldInput(d, c.custom_fields[d.key]);
      inputs.set(d.key, input);
      return label(d.required ? `${d.label} *` : d.label, input);
    });
    const error = h('p', { class: 'form-error', role: 'alert', id: 'card-f-error' });
    const save = h('button', { type: 'submit', class: 'primary', id: 'card-save' }, t('party.save'));
    const form = h('form', { id: 'card-form', class: 'card-form' },
      label(t('intake.name'), name), label(t('intake.kind'), kind), label(t('interest.responsible'), responsible),
      label(t('card.notes'), notes), custom, error,
      h('div', { class: 'row' }, save,
        h('button', { type: 'button', class: 'link', id: 'card-cancel', onclick: () => this.endEdit() }, t('party.cancel'))));
    form.addEventListener('keydown', (e) => { if (e.key === 'Escape') this.endEdit(); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const patch = { name: name.value.trim(), kind: kind.value, notes: notes.value.trim() };
      if (responsible.value) patch.responsible_id = Number(responsible.value);
      const fields = {};
      for (const d of this.defs) {
        const v = fieldValue(d, inputs.get(d.key));
        const had = c.custom_fields[d.key] !== undefined;
        if (v === undefined) {
          error.textContent = t('card.bad_number', d.label);
          inputs.get(d.key).focus();
          return;
        }
        if (v !== null || had) fields[d.key] = v;
      }
      patch.custom_fields = fields;
      save.disabled = true;
      try {
        await api('PATCH', `/api/v1/clients/${this.id}`, patch);
        this.endEdit();
      } catch (err) {
        error.textContent = refusal(err);
        const key = err.field && err.field.startsWith('custom_fields.') ? err.field.slice(14) : null;
        if (key && inputs.get(key)) inputs.get(key).focus();
        save.disabled = false;
      }
    });
    replace(this.fieldsEl, h('h3', {}, t('card.fields')), form);
    name.focus();
  }

  endEdit() {
    this.editing = false;
    this.load();
  }

  // ---- contacts -------------------------------------------------------------------------

  renderContacts() {
    const list = this.card.contacts || [];
    if (!this.contactFormEl) this.contactFormEl = h('div', {});
    replace(this.contactsEl,
      h('div', { class: 'row' }, h('h3', {}, t('card.contacts')), h('span', { class: 'spacer' }),
        h('button', { type: 'button', id: 'contact-add', onclick: () => this.contactForm(null) }, t('card.add_contact'))),
      this.contactFormEl,
      list.length
        ? h('ul', { class: 'contacts-list', id: 'contacts-list' }, list.map((p) => h('li', { dataset: { id: p.id } },
          h('span', { class: 'title' }, p.name),
          p.position ? h('span', { class: 'muted' }, ` · ${p.position}`) : null,
          ...this.identitiesOf(p.id).map((i) => h('span', { class: 'chip' }, i.value)),
          h('button', { type: 'button', class: 'link', onclick: () => this.contactForm(p) }, t('card.edit')))))
        : h('p', { class: 'muted' }, t('card.no_contacts')));
  }

  identitiesOf(contactId) {
    return (this.card.identities || []).filter((i) => i.contact_id === contactId);
  }

  contactForm(p) {
    const name = h('input', { id: 'contact-name', required: true, value: p ? p.name : '', placeholder: t('card.contact_name'), 'aria-label': t('card.contact_name') });
    const position = h('input', { id: 'contact-position', value: p ? p.position || '' : '', placeholder: t('card.position'), 'aria-label': t('card.position') });
    const phone = p ? null : h('input', { id: 'contact-phone', type: 'tel', placeholder: t('intake.mode.phone'), 'aria-label': t('intake.mode.phone') });
    const email = p ? null : h('input', { id: 'contact-email', type: 'email', placeholder: t('intake.mode.email'), 'aria-label': t('intake.mode.email') });
    const error = h('p', { class: 'form-error', role: 'alert', id: 'contact-error' });
    const save = h('button', { type: 'submit', class: 'primary', id: 'contact-save' }, t('party.save'));
    const form = h('form', { id: 'contact-form', class: 'row' }, name, position, phone, email, save,
      h('button', { type: 'button', class: 'link', onclick: () => replace(this.contactFormEl) }, t('party.cancel')), error);
    form.addEventListener('keydown', (e) => { if (e.key === 'Escape') replace(this.contactFormEl); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!name.value.trim()) {
        name.focus();
        return;
      }
      save.disabled = true;
      try {
        if (p) {
          await api('PATCH', `/api/v1/contacts/${p.id}`, { name: name.value.trim(), position: position.value.trim() });
        } else {
          const identities = [];
          if (phone.value.trim()) identities.push({ kind: 'phone', value: phone.value.trim() });
          if (email.value.trim()) identities.push({ kind: 'email', value: email.value.trim() });
          await api('POST', `/api/v1/clients/${this.id}/contacts`, {
            name: name.value.trim(), position: position.value.trim() || null, identities,
          });
        }
        replace(this.contactFormEl);
        this.load();
      } catch (err) {
        error.textContent = refusal(err);
        save.disabled = false;
      }
    });
    replace(this.contactFormEl, form);
    name.focus();
  }

  // ---- identities -----------------------------------------------------------------------

  renderIdentities() {
    const own = (this.card.identities || []).filter((i) => !i.contact_id);
    if (!this.identityForm) this.identityForm = this.identityFormEl();
    const error = this.identityError;
    replace(this.identitiesEl,
      h('h3', {}, t('card.identities')),
      h('ul', { class: 'identities', id: 'identities-list' }, own.map((i) => h('li', { dataset: { id: i.id } },
        h('span', { class: 'muted' }, t(`intake.mode.${i.kind}`) || i.kind), ' ', h('span', { class: 'value' }, i.value), ' ',
        i.kind === 'phone'
          ? h('button', {
            type: 'button', class: 'link dial', title: t('call.dial', i.value), 'aria-label': t('call.dial', i.value),
            onclick: () => dial(i.value, { type: 'client', id: this.id }, (m) => this.ws.flash(m)),
          }, '☎')
          : null,
        h('button', {
          type: 'button', class: 'link', 'aria-label': t('card.remove'),
          onclick: async () => {
            try {
              await api('DELETE', `/api/v1/identities/${i.id}`);
              this.load();
            } catch (err) {
              error.textContent = refusal(err);
            }
          },
        }, '×')))),
      this.identityForm);
  }

  /** The add-an-identity form; built once per card so a live refresh keeps its input. */
  identityFormEl() {
    const kind = h('select', { id: 'identity-kind', 'aria-label': t('intake.by') },
      IDENTITY_KINDS.map((k) => h('option', { value: k }, t(`intake.mode.${k}`))));
    const value = h('input', { id: 'identity-value', placeholder: t('intake.query'), 'aria-label': t('intake.query') });
    const error = h('p', { class: 'form-error', role: 'alert', id: 'identity-error' });
    this.identityError = error;
    const form = h('form', { id: 'identity-form', class: 'row' }, kind, value,
      h('button', { type: 'submit', id: 'identity-add' }, t('card.add')), error);
    value.addEventListener('input', () => { error.textContent = ''; });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!value.value.trim()) {
        value.focus();
        return;
      }
      error.textContent = '';
      try {
        await api('POST', '/api/v1/identities', { kind: kind.value, value: value.value.trim(), client_id: this.id });
        value.value = '';
        this.load();
      } catch (err) {
        error.textContent = err.code === 'duplicate' || err.status === 409 ? t('card.identity_taken') : refusal(err);
      }
    });
    return form;
  }
}

/** A custom field's value as text on the card. */
function fieldText(def, v) {
  if (v === undefined || v === null || v === '') return '—';
  if (def.field_type === 'date') {
    const d = new Date(`${v}T00:00:00`);
    return Number.isNaN(d.getTime()) ? String(v) : d.toLocaleDateString();
  }
  return String(v);
}

function fieldInput(def, v) {
  const id = `card-cf-${def.key}`;
  if (def.field_type === 'enum') {
    return h('select', { id, 'aria-label': def.label },
      h('option', { value: '' }, '—'),
      def.options.map((o) => h('option', { value: o, selected: o === v }, o)));
  }
  const type = def.field_type === 'number' ? 'number' : def.field_type === 'date' ? 'date' : 'text';
  return h('input', { id, type, step: type === 'number' ? 'any' : null, value: v === undefined || v === null ? '' : String(v), 'aria-label': def.label });
}

/** The input's value for the API: null when empty (removes it), undefined when invalid. */
function fieldValue(def, input) {
  const raw = input.value.trim();
  if (raw === '') return null;
  if (def.field_type === 'number') {
    const n = Number(raw);
    return Number.isFinite(n) ? n : undefined;
  }
  return raw;
}
