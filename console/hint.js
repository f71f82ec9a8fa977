// iConsultant's reading of an inbound message, under the message: the type it applied, or
// a hint with the most probable types; the operator answers with a like, or a dislike and
// the right type (saved, learned at once, and the dialog takes that type).

import { api } from './api.js';
import { h } from './dom.js';
import { t } from './i18n.js';

export class Hints {
  constructor(workspace) {
    this.ws = workspace;
    this.types = [];
    /** message id → the type the operator gave it (this session). */
    this.verdicts = new Map();
    this.load();
  }

  async load() {
    try {
      this.types = await api('GET', '/api/v1/request-types');
    } catch {
      this.types = [];
    }
  }

  /** The display name of type `key`: the built-in types are translated. */
  name(key) {
    const k = `rtype.${key}`;
    const tr = t(k);
    if (tr !== k) return tr;
    const x = this.types.find((y) => y.key === key);
    return x ? x.name : key;
  }

  /** The hint row of message `m`, or null. */
  el(m) {
    const c = m.classification;
    if (m.direction !== 'inbound' || !c || !Array.isArray(c.ranked) || !c.ranked.length) return null;
    // A provisional reading (engine 1's, while engine 2 reads) is replaced in a moment by a
    // message update; it is shown dimmed meanwhile.
    const box = h('div', {
      class: c.provisional ? 'hint hint-provisional' : 'hint',
      dataset: { top: c.ranked[0].type },
      title: c.provisional ? t('hint.provisional') : null,
    });
    const label = c.applied
      ? h('span', { class: 'hint-applied' }, t('hint.applied', this.name(c.applied)))
      : h('span', { class: 'hint-guess' }, t('hint.looks_like'), ' ',
        c.ranked.slice(0, 3).filter((s, i) => i === 0 || s.p >= 0.05)
          .map((s) => `${this.name(s.type)} ${percent(s.p)}`).join(' · '));
    box.append(label);
    const done = this.verdicts.get(m.id);
    if (done) {
      box.append(h('span', { class: 'hint-done' }, t('hint.saved', this.name(done))));
      return box;
    }
    box.append(
      h('button', {
        type: 'button', class: 'link hint-like', title: t('hint.like'), 'aria-label': t('hint.like'),
        onclick: () => this.send(m, box, 'like'),
      }, t('hint.yes')),
      h('button', {
        type: 'button', class: 'link hint-dislike', title: t('hint.dislike'), 'aria-label': t('hint.dislike'),
        onclick: () => this.pick(m, box),
      }, t('hint.no')));
    return box;
  }

  /** A dislike asks for the right type. */
  pick(m, box) {
    if (box.querySelector('select')) return;
    const sel = h('select', { class: 'hint-pick', 'aria-label': t('hint.pick') },
      h('option', { value: '' }, t('hint.pick')),
      this.types.map((x) => h('option', { value: x.key }, this.name(x.key))));
    sel.addEventListener('change', () => {
      if (sel.value) this.send(m, box, 'dislike', sel.value);
    });
    box.append(sel);
    sel.focus();
  }

  async send(m, box, verdict, type) {
    const body = { verdict };
    if (type) body.request_type = type;
    try {
      const r = await api('POST', `/api/v1/messages/${m.id}/classification`, body);
      this.verdicts.set(m.id, r.feedback.label);
      const fresh = this.el(m);
      if (fresh) box.replaceWith(fresh);
    } catch (e) {
      this.ws.flash(e.status === 403 ? t('error.forbidden') : t('error.generic', e.message));
    }
  }
}

/** A probability as a whole percent; below certainty never shown as 100%. */
function percent(p) {
  const n = Math.round(p * 100);
  return `${p < 1 ? Math.min(n, 99) : n}%`;
}
