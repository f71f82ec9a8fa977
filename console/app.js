// The console's entry point: who is signed in, the sign-in form, and the workspace.

import { api, ApiError, SESSION_ENDED } from './api.js';
import { h, replace } from './dom.js';
import { lang, setLang, t } from './i18n.js';
import { Workspace } from './workspace.js';

const root = document.getElementById('app');
let workspace = null;

async function boot() {
  document.title = t('app.title');
  let me = null;
  try {
    me = await api('GET', '/api/v1/auth/me');
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) {
      showLogin(e.code === 'network' ? t('error.network') : t('error.generic', e.message));
      return;
    }
  }
  if (me && me.user) start(me.user);
  else showLogin();
}

function start(user) {
  if (user.must_change_password) {
    showLogin(t('login.password_change'));
    return;
  }
  workspace = new Workspace(root, user, { onLogout: logout, onLang: switchLang });
  workspace.start();
}

function stopWorkspace() {
  if (workspace) workspace.stop();
  workspace = null;
}

async function logout() {
  try { await api('POST', '/api/v1/auth/logout'); } catch (_) { /* gone already */ }
  stopWorkspace();
  showLogin();
}

function switchLang() {
  setLang(lang() === 'ru' ? 'en' : 'ru');
  document.title = t('app.title');
  if (workspace) workspace.render();
  else showLogin();
}

function showLogin(message) {
  const error = h('p', { class: 'form-error', role: 'alert', id: 'login-error' }, message || '');
  const login = h('input', { id: 'login', name: 'login', autocomplete: 'username', required: true, autofocus: true });
  const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, t('login.submit'));
  const form = h('form', { class: 'login', id: 'login-form', novalidate: true },
    h('h1', {}, t('app.title')),
    h('h2', {}, t('login.title')),
    h('label', { for: 'login' }, t('login.login')), login,
    h('label', { for: 'password' }, t('login.password')), password,
    error,
    h('div', { class: 'row' }, submit,
      h('button', { type: 'button', class: 'link', onclick: switchLang }, t('top.lang'))));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    error.textContent = '';
    try {
      const res = await api('POST', '/api/v1/auth/login', { login: login.value.trim(), password: password.value });
      start(res.user);
    } catch (e) {
      error.textContent = e.status === 401 ? t('login.wrong')
        : e.status === 429 ? t('login.limited')
        : e.code === 'network' ? t('error.network')
        : t('login.failed', e.message);
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, h('main', { class: 'center' }, form));
  login.focus();
}

window.addEventListener(SESSION_ENDED, () => {
  if (!workspace) return;
  stopWorkspace();
  showLogin(t('login.expired'));
});

window.addEventListener('kommutator:ended', () => {
  stopWorkspace();
  showLogin(t('login.expired'));
});

boot();
