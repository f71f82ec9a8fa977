// iConsultant's suggested answers for the open dialog, above the reply box: the best
// knowledge-base articles for the customer's latest messages. They are read when the dialog
// opens and pushed again by the hub (`kb_suggestions`) after each new inbound message.
// "Insert" (or Alt+1…5) puts the answer's text, links and images into the reply and tells
// the hub it was used, which ranks that article higher next time.

import { api } from './api.js';
import { h, replace } from './dom.js';
import { t } from './i18n.js';

export class Suggestions {
  constructor(workspace) {
    this.ws = workspace;
    /** dialog id → its suggestions, as last received. */
    this.lists = new Map();
    this.el = null;
    this.collapsed = false;
  }

  /** A fresh panel element for the dialog view (the view is rebuilt on each open). */
  mount() {
    this.el = h('section', { class: 'suggestions', id: 'suggestions', 'aria-label': t('kb.title') });
    this.render();
    return this.el;
  }

  /** Reads the suggestions of dialog `id` (on open, and after a resume). */
  async load(id) {
    try {
      const r = await api('GET', `/api/v1/dialogs/${id}/suggestions`);
      this.lists.set(id, r.suggestions || []);
    } catch (_) {
      this.lists.set(id, []);
    }
    if (id === this.ws.current) this.render();
  }

  /** A `kb_suggestions` event. */
  onEvent(d) {
    if (!d || typeof d.dialog_id !== 'number' || !Array.isArray(d.suggestions)) return;
    this.lists.set(d.dialog_id, d.suggestions);
    if (d.dialog_id === this.ws.current) this.render();
  }

  forget(id) {
    this.lists.delete(id);
  }

  render() {
    if (!this.el) return;
    const list = this.lists.get(this.ws.current) || [];
    if (!list.length) {
      replace(this.el);
      this.el.hidden = true;
      return;
    }
    this.el.hidden = false;
    const toggle = h('button', {
      type: 'button', class: 'link', id: 'suggestions-toggle', 'aria-expanded': String(!this.collapsed),
      onclick: () => { this.collapsed = !this.collapsed; this.render(); },
    }, this.collapsed ? t('kb.show', list.length) : t('kb.hide'));
    const head = h('div', { class: 'row suggestions-head' }, h('strong', {}, t('kb.title')), h('span', { class: 'spacer' }), toggle);
    if (this.collapsed) {
      replace(this.el, head);
      return;
    }
    replace(this.el, head, h('ol', { class: 'suggestion-list' }, list.slice(0, 5).map((s, i) => this.item(s, i))));
  }

  item(s, i) {
    const links = [...(s.links || []), ...(s.images || []).map((i) => ({ ...i, image: true }))];
    return h('li', { class: 'suggestion', dataset: { article: s.article_id } },
      h('div', { class: 'row' },
        h('span', { class: 'title' }, s.title),
        s.public ? null : h('span', { class: 'chip internal', title: t('kb.internal_hint') }, t('kb.internal')),
        h('span', { class: 'spacer' }),
        h('button', {
          type: 'button', class: 'suggestion-insert', title: t('kb.insert_key', i + 1),
          onclick: () => this.insert(s),
        }, t('kb.insert'))),
      h('p', { class: 'muted snippet' }, s.snippet),
      links.length
        ? h('p', { class: 'links' }, links.map((l) => h('a', {
          href: l.url, target: '_blank', rel: 'noopener noreferrer nofollow',
        }, l.image ? `🖼 ${l.text || l.url}` : (l.text || l.url))))
        : null);
  }

  /** Alt+1…5 in the reply box inserts that suggestion. */
  onKey(e) {
    if (!e.altKey || e.ctrlKey || e.metaKey) return false;
    const n = Number(e.key);
    if (!(n >= 1 && n <= 5)) return false;
    const s = (this.lists.get(this.ws.current) || [])[n - 1];
    if (!s) return false;
    e.preventDefault();
    this.insert(s);
    return true;
  }

  /** Puts the answer into the reply box at the cursor and records the use. */
  insert(s) {
    const box = this.ws.replyText;
    const dialogId = this.ws.current;
    if (!box || dialogId === null) return;
    const text = s.reply_text || '';
    const start = box.selectionStart ?? box.value.length;
    const end = box.selectionEnd ?? box.value.length;
    const before = box.value.slice(0, start);
    const sep = before && !before.endsWith('\n') ? '\n' : '';
    box.value = `${before}${sep}${text}${box.value.slice(end)}`;
    const caret = before.length + sep.length + text.length;
    box.focus();
    box.setSelectionRange(caret, caret);
    box.dispatchEvent(new Event('input', { bubbles: true }));
    api('POST', `/api/v1/kb/articles/${s.article_id}/uses`, { dialog_id: dialogId }).catch(() => {});
  }
}
