// The Interest card (a deal, in 1C:CRM's words): its sales scenario as a stage bar (click
// a stage to move it there), amount, responsible, the next planned interaction, and its own
// Feed. Live: it follows the Interest's topic and refreshes on every change.

import { all, api } from './api.js';
import { h, replace, richText, shortTime } from './dom.js';
import { lang, t } from './i18n.js';

const REFRESH_DEBOUNCE_MS = 120;
let scenarios = null;

/** The sales scenarios with their stages (read once per console). */
async function loadScenarios() {
  if (!scenarios) {
    scenarios = api('GET', '/api/v1/sales-scenarios').catch((e) => {
      scenarios = null;
      throw e;
    });
  }
  return scenarios;
}

/** An amount in minor units as money, e.g. `125 000,00 ₽`. */
export function money(minor, currency) {
  if (minor === null || minor === undefined) return '—';
  try {
    return new Intl.NumberFormat(lang() === 'ru' ? 'ru-RU' : 'en-GB', { style: 'currency', currency }).format(minor / 100);
  } catch (_) {
    return `${(minor / 100).toFixed(2)} ${currency}`;
  }
}

export class InterestCard {
  constructor(el, live, id, { userName, onBack, onError }) {
    this.el = el;
    this.live = live;
    this.id = id;
    this.topic = `interest:${id}`;
    this.userName = userName;
    this.onBack = onBack;
    this.onError = onError;
    this.interest = null;
    this.scenario = null;
    this.feed = [];
    this.next = null;
    this.timer = null;
    this.listener = (e) => {
      const f = e.detail;
      if (!f.ephemeral && (f.topics || []).includes(this.topic)) this.refreshSoon();
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

  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.live.state === 'live') this.load();
    }, REFRESH_DEBOUNCE_MS);
  }

  async load() {
    try {
      const [interest, list, feed, planned] = await Promise.all([
        api('GET', `/api/v1/interests/${this.id}`),
        loadScenarios(),
        all(`/api/v1/interests/${this.id}/feed`, 200),
        all(`/api/v1/interactions?interest_id=${this.id}&status=planned`, 200),
      ]);
      this.interest = interest;
      this.scenario = (list || []).find((s) => s.id === interest.scenario_id) || null;
      this.feed = feed;
      this.next = planned
        .filter((x) => x.planned_at)
        .sort((a, b) => String(a.planned_at).localeCompare(String(b.planned_at)))[0] || null;
    } catch (e) {
      this.onError(e);
    }
    this.render();
  }

  async move(stageId) {
    try {
      await api('POST', `/api/v1/interests/${this.id}/stage`, { stage_id: stageId });
      this.refreshSoon();
    } catch (e) {
      this.onError(e);
    }
  }

  render() {
    const i = this.interest;
    const back = h('button', { class: 'link', id: 'interest-back', onclick: () => this.onBack() }, `← ${t('interest.back')}`);
    if (!i) {
      replace(this.el, back, h('p', { class: 'muted' }, '…'));
      return;
    }
    const stages = this.scenario ? this.scenario.stages : [];
    const current = stages.findIndex((s) => s.id === i.stage_id);
    const bar = h('ol', { class: 'stages', id: 'stage-bar', 'aria-label': t('interest.stages') },
      stages.map((s, n) => h('li', {
        class: `stage${n < current ? ' done' : ''}${n === current ? ' current' : ''} so-${s.outcome}`,
        dataset: { stage: s.id },
      }, h('button', {
        type: 'button', title: s.name, 'aria-current': n === current ? 'step' : null,
        disabled: n === current || i.status !== 'open' ? true : null,
        onclick: () => this.move(s.id),
      }, s.name))));
    const next = this.next;
    replace(this.el,
      back,
      h('div', { class: 'interest-head' },
        h('h3', { id: 'interest-title' }, i.title),
        h('span', { class: `badge st-${i.status}` }, t(`interest.status.${i.status}`))),
      bar,
      h('dl', { class: 'facts' },
        h('dt', {}, t('interest.amount')), h('dd', { id: 'interest-amount' }, money(i.amount_minor, i.currency)),
        h('dt', {}, t('interest.responsible')), h('dd', {}, i.responsible_id ? this.userName(i.responsible_id) : '—'),
        h('dt', {}, t('interest.next')), h('dd', { id: 'interest-next' },
          next ? `${next.subject} · ${shortTime(next.planned_at, lang())}` : t('interest.nothing_planned')),
        i.source ? [h('dt', {}, t('interest.source')), h('dd', {}, i.source)] : null),
      h('h3', {}, t('feed.title')),
      h('ol', { class: 'feed', id: 'interest-feed' },
        this.feed.length
          ? this.feed.map((e) => h('li', { class: `feed-item fk-${e.kind}`, dataset: { kind: e.kind } },
            h('div', { class: 'feed-line' },
              h('span', { class: 'feed-kind' }, t(`feed.kind.${e.kind}`)),
              h('time', { datetime: e.occurred_at }, shortTime(e.occurred_at, lang()))),
            h('div', { class: 'feed-title' }, e.title),
            e.preview ? h('div', { class: 'feed-preview' }, richText(e.preview)) : null))
          : h('li', { class: 'empty' }, t('feed.empty'))));
  }
}
