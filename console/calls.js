// Calls in the console: the screen pop while the operator's phone rings (who is calling:
// the client or the new lead, their open Interest, the last things that happened), the
// call while it lasts, and click-to-call from any phone number shown.
//
// Call events come over the operator socket on `user:` and `dept:` topics; only the calls
// ringing or answered at this operator's extension pop up.

import { api } from './api.js';
import { h, replace, shortTime } from './dom.js';
import { lang, t } from './i18n.js';
import * as notify from './notify.js';

const LINGER_MS = 6000;

export class CallPopups {
  constructor(ws) {
    this.ws = ws;
    this.calls = new Map();
    this.el = h('section', { class: 'call-pops', id: 'call-pops', 'aria-live': 'assertive' });
    this.timers = new Map();
  }

  /** The container, placed once in the page. */
  mount(root) {
    if (!this.el.isConnected) root.append(this.el);
  }

  /** A `call` event from the socket. */
  onCall(f) {
    const k = f.data || {};
    const mine = k.operator_id === this.ws.me.id;
    const known = this.calls.get(k.id);
    if (!mine && !known) return;
    if (known && known.call.updated_at && k.updated_at && known.call.updated_at > k.updated_at) return;
    const entry = known || { call: k, party: null, interest: null, feed: [] };
    entry.call = k;
    if (!mine) {
      // Taken by a colleague (a queue moved on): not ours any more.
      this.drop(k.id);
      return;
    }
    this.calls.set(k.id, entry);
    if (!known) {
      if (k.status === 'ringing' && k.direction !== 'outbound') {
        notify.tell(t('call.incoming'), k.from_number, () => window.focus());
      }
      this.load(entry);
    }
    if (k.status === 'completed' || k.status === 'missed') this.lingerThenDrop(k.id);
    this.render();
  }

  /** Who is calling, their open Interest and their last few Feed entries. */
  async load(entry) {
    const k = entry.call;
    const type = k.client_id ? 'client' : k.lead_id ? 'lead' : null;
    if (!type) return;
    const id = k.client_id || k.lead_id;
    try {
      const [party, feed, interest] = await Promise.all([
        api('GET', `/api/v1/${type}s/${id}`),
        api('GET', `/api/v1/${type}s/${id}/feed?limit=3`).then((p) => p.items || []),
        k.interest_id ? api('GET', `/api/v1/interests/${k.interest_id}`) : Promise.resolve(null),
      ]);
      entry.party = { type, ...party };
      entry.feed = feed.filter((e) => !(e.kind === 'call' && e.title && e.occurred_at === k.started_at));
      entry.interest = interest;
    } catch (_) { /* the number alone still helps */ }
    this.render();
  }

  lingerThenDrop(id) {
    clearTimeout(this.timers.get(id));
    this.timers.set(id, setTimeout(() => this.drop(id), LINGER_MS));
  }

  drop(id) {
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
    this.calls.delete(id);
    this.render();
  }

  render() {
    replace(this.el, [...this.calls.values()].map((e) => this.card(e)));
  }

  card(e) {
    const k = e.call;
    const number = k.direction === 'outbound' ? k.to_number : k.from_number;
    const p = e.party;
    const state = k.status === 'ringing'
      ? t(k.direction === 'outbound' ? 'call.dialing' : 'call.incoming')
      : k.status === 'answered' ? t('call.talking')
        : k.status === 'missed' ? t('call.missed') : t('call.ended');
    const who = p ? p.name : t('call.unknown');
    return h('article', { class: `call-pop cs-${k.status}`, dataset: { call: k.id, status: k.status } },
      h('header', {},
        h('span', { class: 'call-state' }, state),
        h('button', { type: 'button', class: 'link', 'aria-label': t('call.dismiss'), onclick: () => this.drop(k.id) }, '×')),
      h('div', { class: 'call-who', id: `call-who-${k.id}` }, who),
      h('div', { class: 'muted' }, number,
        p && p.type === 'lead' ? ` · ${t('call.new_caller')}` : '',
        k.traffic_source && k.traffic_source.utm_source ? ` · ${k.traffic_source.utm_source}` : ''),
      e.interest ? h('div', { class: 'call-interest' }, `${t('interest.one')}: ${e.interest.title}`) : null,
      e.feed.length
        ? h('ul', { class: 'call-feed' }, e.feed.map((f) => h('li', {},
          h('time', { datetime: f.occurred_at }, shortTime(f.occurred_at, lang())), ' ', f.title)))
        : null,
      p && p.type === 'client'
        ? h('button', { type: 'button', class: 'link', onclick: () => this.ws.showClient(p.id) }, t('party.open_card'))
        : null);
  }
}

/** Click-to-call: rings the operator's phone, then dials `to`. */
export async function dial(to, party, flash) {
  const input = { to };
  if (party && party.type === 'client') input.client_id = party.id;
  if (party && party.type === 'lead') input.lead_id = party.id;
  try {
    await api('POST', '/api/v1/calls/originate', input);
    flash(t('call.dialing_to', to));
  } catch (e) {
    if (e.code === 'no_telephony') flash(t('call.no_telephony'));
    else if (e.field === 'extension') flash(t('call.no_extension'));
    else flash(t('error.generic', e.message));
  }
}
