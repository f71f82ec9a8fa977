// The supervisor's view: operators with presence and load, queue length per department,
// the longest wait, and inquiries not yet answered. Live: dialogs come from the
// workspace's live state; operators are re-read when presence or capacity changes.

import { api } from './api.js';
import { elapsed, h, replace } from './dom.js';
import { t } from './i18n.js';

export class SupervisorView {
  constructor(el, ws) {
    this.el = el;
    this.ws = ws;
    this.operators = [];
    this.timer = null;
  }

  async load() {
    const deps = this.ws.me.role === 'admin' ? this.ws.departments.map((d) => d.id) : [this.ws.me.department_id];
    const all = [];
    for (const d of deps.filter(Boolean)) {
      try {
        all.push(...(await api('GET', `/api/v1/operators?department_id=${d}`)));
      } catch (_) { /* not ours */ }
    }
    this.operators = all;
    this.render();
  }

  /** Presence or capacity changed somewhere: read the operators again (debounced). */
  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), 200);
  }

  stop() {
    clearTimeout(this.timer);
  }

  render() {
    const open = [...this.ws.dialogs.values()].filter((d) => d.status === 'open');
    const byDept = new Map();
    for (const d of open) {
      const k = d.department_id ?? 0;
      const row = byDept.get(k) || { queued: 0, waiting: 0, oldest: null };
      if (d.assignee_id === null || d.assignee_id === undefined) row.queued += 1;
      if (d.waiting_since) {
        row.waiting += 1;
        if (!row.oldest || d.waiting_since < row.oldest) row.oldest = d.waiting_since;
      }
      byDept.set(k, row);
    }
    const deptName = (id) => (this.ws.departments.find((d) => d.id === id) || {}).name || t('sup.no_department');
    const userName = (id) => this.ws.userName(id);
    replace(this.el,
      h('h2', {}, t('sup.title')),
      h('h3', {}, t('sup.queues')),
      h('table', { class: 'grid', id: 'sup-queues' },
        h('thead', {}, h('tr', {}, h('th', {}, t('sup.department')), h('th', {}, t('sup.queued')),
          h('th', {}, t('sup.unanswered')), h('th', {}, t('sup.longest')))),
        h('tbody', {}, [...byDept.entries()].map(([id, r]) => h('tr', { dataset: { department: id } },
          h('td', {}, deptName(id)), h('td', { class: 'num' }, String(r.queued)),
          h('td', { class: 'num' }, String(r.waiting)),
          h('td', { class: 'num wait-cell', dataset: { since: r.oldest || '' } }, r.oldest ? elapsed(r.oldest) : '—'))))),
      h('h3', {}, t('sup.operators')),
      h('table', { class: 'grid', id: 'sup-operators' },
        h('thead', {}, h('tr', {}, h('th', {}, t('sup.operator')), h('th', {}, t('sup.status')),
          h('th', {}, t('sup.load')), h('th', {}, t('sup.since')))),
        h('tbody', {}, this.operators.map((o) => h('tr', { dataset: { user: o.user_id, status: o.status } },
          h('td', {}, userName(o.user_id)),
          h('td', {}, h('span', { class: `presence p-${o.status}` }, t(`presence.${o.status}`)), o.on_call ? ` · ${t('sup.on_call')}` : ''),
          h('td', { class: 'num' }, `${o.open_dialogs} / ${o.max_dialogs}`),
          h('td', { class: 'num' }, seen(o.since) ? elapsed(o.since) : '—'))))));
  }

  tick() {
    for (const el of this.el.querySelectorAll('.wait-cell[data-since]')) {
      if (el.dataset.since) el.textContent = elapsed(el.dataset.since);
    }
  }
}

/** Whether a presence time is real (an operator who never connected has none). */
function seen(since) {
  return !!since && new Date(since).getUTCFullYear() > 2000;
}
