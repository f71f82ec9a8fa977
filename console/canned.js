// Canned responses in the reply box: type `/` and the start of a shortcut (or of a title),
// pick with ↑ ↓ and Enter or Tab (or a click), Escape closes. The list holds the
// operator's personal responses, their department's and the global ones. A small manager
// adds and removes personal ones (and, for supervisors and admins, the department's).

import { api } from './api.js';
import { h, replace } from './dom.js';
import { t } from './i18n.js';

const TRIGGER = /(^|\s)\/([\p{L}\p{N}_-]{0,32})$/u;
const SHOWN = 8;

export class Canned {
  constructor(me) {
    this.me = me;
    this.items = [];
    this.loaded = null;
  }

  /** Reads the responses (again). */
  load() {
    this.loaded = api('GET', '/api/v1/canned-responses')
      .then((items) => { this.items = items || []; })
      .catch(() => { this.items = []; });
    return this.loaded;
  }

  matches(word) {
    const w = word.toLowerCase();
    return this.items
      .filter((c) => c.shortcut.startsWith(w) || c.title.toLowerCase().includes(w))
      .slice(0, SHOWN);
  }

  /**
   * Makes `textarea` offer responses. The picker's keys run before the box's own (Enter
   * inserts instead of sending while the list is open).
   */
  attach(textarea, container) {
    if (!this.loaded) this.load();
    const list = h('ul', { class: 'canned-list', id: 'canned-list', role: 'listbox', hidden: true });
    container.prepend(list);
    let options = [];
    let chosen = 0;
    let range = null;

    const close = () => {
      list.hidden = true;
      options = [];
      range = null;
    };
    const insert = (c) => {
      if (!range) return;
      const before = textarea.value.slice(0, range[0]);
      const after = textarea.value.slice(range[1]);
      textarea.value = before + c.body + after;
      const caret = before.length + c.body.length;
      textarea.setSelectionRange(caret, caret);
      textarea.dispatchEvent(new Event('input'));
      close();
      textarea.focus();
    };
    const render = () => {
      replace(list, options.map((c, i) => h('li', {
        role: 'option', class: `canned-item${i === chosen ? ' chosen' : ''}`, 'aria-selected': String(i === chosen),
        dataset: { shortcut: c.shortcut },
        onmousedown: (e) => { e.preventDefault(); insert(c); },
      }, h('span', { class: 'shortcut' }, `/${c.shortcut}`), h('span', { class: 'title' }, c.title),
      h('span', { class: 'scope' }, t(`canned.scope.${c.scope}`)))));
      list.hidden = options.length === 0;
    };
    const update = () => {
      const caret = textarea.selectionStart;
      const m = textarea.value.slice(0, caret).match(TRIGGER);
      if (!m) {
        close();
        return;
      }
      options = this.matches(m[2]);
      chosen = 0;
      range = [caret - m[2].length - 1, caret];
      render();
    };
    textarea.addEventListener('input', update);
    textarea.addEventListener('blur', () => setTimeout(close, 150));
    textarea.addEventListener('keydown', (e) => {
      if (list.hidden || !options.length) return;
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        chosen = (chosen + (e.key === 'ArrowDown' ? 1 : options.length - 1)) % options.length;
        render();
      } else if (e.key === 'Enter' || e.key === 'Tab') {
        insert(options[chosen]);
      } else if (e.key === 'Escape') {
        close();
      } else {
        return;
      }
      e.preventDefault();
      e.stopImmediatePropagation();
    }, true);
  }

  /** The manager: the responses one may use, removing one's own, adding new ones. */
  manager(onClose) {
    const canDept = this.me.role === 'admin' || (this.me.role === 'supervisor' && this.me.department_id);
    const list = h('ul', { class: 'canned-manage-list' });
    const renderList = () => replace(list, this.items.map((c) => h('li', { dataset: { id: c.id } },
      h('strong', {}, `/${c.shortcut}`), ' ', c.title, ' ', h('span', { class: 'muted' }, t(`canned.scope.${c.scope}`)),
      (c.scope === 'personal' && c.user_id === this.me.id) || (c.scope === 'department' && canDept) || (c.scope === 'global' && this.me.role === 'admin')
        ? h('button', {
          class: 'link', type: 'button',
          onclick: async () => {
            try { await api('DELETE', `/api/v1/canned-responses/${c.id}`); } catch (_) { /* gone already */ }
            await this.load();
            renderList();
          },
        }, t('canned.delete'))
        : null)));
    const shortcut = h('input', { id: 'canned-shortcut', placeholder: t('canned.shortcut'), 'aria-label': t('canned.shortcut'), maxlength: 32 });
    const title = h('input', { id: 'canned-title', placeholder: t('canned.title'), 'aria-label': t('canned.title'), maxlength: 200 });
    const body = h('textarea', { id: 'canned-body', rows: 3, placeholder: t('canned.body'), 'aria-label': t('canned.body'), maxlength: 4000 });
    const scope = canDept
      ? h('select', { id: 'canned-scope', 'aria-label': t('canned.scope') },
        h('option', { value: 'personal' }, t('canned.scope.personal')),
        h('option', { value: 'department' }, t('canned.scope.department')))
      : null;
    const error = h('p', { class: 'form-error', role: 'alert' });
    const form = h('form', { id: 'canned-form', class: 'canned-form' }, shortcut, title, body, scope, error,
      h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary', id: 'canned-save' }, t('party.save')),
        h('button', { type: 'button', class: 'link', onclick: onClose }, t('party.cancel'))));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      error.textContent = '';
      try {
        await api('POST', '/api/v1/canned-responses', {
          scope: scope ? scope.value : 'personal',
          shortcut: shortcut.value.trim(),
          title: title.value.trim(),
          body: body.value,
        });
        shortcut.value = '';
        title.value = '';
        body.value = '';
        await this.load();
        renderList();
      } catch (err) {
        error.textContent = err.status === 409 ? t('canned.taken') : t('error.generic', err.message);
      }
    });
    form.addEventListener('keydown', (e) => { if (e.key === 'Escape') onClose(); });
    renderList();
    return h('section', { class: 'canned-manager', id: 'canned-manager' }, h('h3', {}, t('canned.manage')), list, form);
  }
}
