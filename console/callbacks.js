// Missed calls to return: the callback tasks the hub leaves for each missed inbound call
// (one open task per number; the next answered call with that number completes it). Mine
// first, then the ones of colleagues and nobody's, oldest first. Live: any change to an
// interaction re-reads the list.

import { all, api } from './api.js';
import { elapsed, h, replace } from './dom.js';
import { t } from './i18n.js';
import { dial } from './calls.js';

const REFRESH_DEBOUNCE_MS = 200;

export class Callbacks {
  constructor(ws) {
    this.ws = ws;
    this.el = null;
    this.items = [];
    this.calls = new Map();
    this.timer = null;
    this.loaded = false;
  }

  /** Open callbacks visible to this operator, each with its missed call. */
  async load() {
    try {
      const planned = await all('/api/v1/interactions?status=planned', 400);
      this.items = planned.filter((x) => x.kind === 'task' && x.call_id);
      await Promise.all(this.items.filter((x) => !this.calls.has(x.call_id)).map(async (x) => {
        try {
          this.calls.set(x.call_id, await api('GET', `/api/v1/calls/${x.call_id}`));
        } catch (_) { /* shown by its subject alone */ }
      }));
      const me = this.ws.me.id;
      const rank = (x) => (x.responsible_id === me ? 0 : x.responsible_id ? 2 : 1);
      this.items.sort((a, b) => rank(a) - rank(b) || String(a.planned_at).localeCompare(String(b.planned_at)));
      this.loaded = true;
    } catch (e) {
      if (e.code !== 'network') this.ws.flash(t('error.generic', e.message));
    }
    this.ws.renderTop();
    this.render();
  }

  /** How many are this operator's. */
  mine() {
    return this.items.filter((x) => x.responsible_id === this.ws.me.id).length;
  }

  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), REFRESH_DEBOUNCE_MS);
  }

  stop() {
    clearTimeout(this.timer);
  }

  render() {
    if (!this.el) return;
    const rows = this.items.map((x) => {
      const k = this.calls.get(x.call_id);
      const number = k ? k.from_number : '';
      const party = k && (k.client_id ? { type: 'client', id: k.client_id } : k.lead_id ? { type: 'lead', id: k.lead_id } : null);
      return h('li', { class: 'callback', dataset: { id: x.id, call: x.call_id } },
        h('div', { class: 'callback-main' },
          h('span', { class: 'title' }, x.subject),
          h('span', { class: 'muted' },
            k ? `${t(`call.reason.${k.missed_reason || 'missed'}`)} · ` : '',
            x.responsible_id ? this.ws.userName(x.responsible_id) : t('callbacks.nobody'),
            ' · ', h('span', { class: 'wait-cell', dataset: { since: x.planned_at || x.created_at } }, elapsed(x.planned_at || x.created_at)))),
        number
          ? h('button', { type: 'button', class: 'primary callback-dial', onclick: () => dial(number, party, (m) => this.ws.flash(m)) }, t('callbacks.call'))
          : null,
        h('button', {
          type: 'button', class: 'callback-done',
          onclick: async () => {
            try {
              await api('PATCH', `/api/v1/interactions/${x.id}`, { status: 'done' });
              this.refreshSoon();
            } catch (e) {
              this.ws.flash(e.status === 403 || e.status === 404 ? t('error.forbidden') : t('error.generic', e.message));
            }
          },
        }, t('callbacks.done')));
    });
    replace(this.el,
      h('h2', {}, t('callbacks.title')),
      rows.length ? h('ol', { class: 'callbacks', id: 'callbacks-list' }, rows)
        : h('p', { class: 'placeholder', id: 'callbacks-empty' }, this.loaded ? t('callbacks.none') : '…'));
  }

  tick() {
    if (!this.el) return;
    for (const el of this.el.querySelectorAll('.wait-cell[data-since]')) el.textContent = elapsed(el.dataset.since);
  }
}
