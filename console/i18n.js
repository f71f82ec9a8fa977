// Russian and English. The language comes from the operator's choice (kept in this
// browser), else from the browser's languages; switching re-renders the console.

const STRINGS = {
  en: {
    'app.title': 'Kommutator',
    'login.title': 'Sign in',
    'login.login': 'Login',
    'login.password': 'Password',
    'login.submit': 'Sign in',
    'login.wrong': 'Wrong login or password.',
    'login.expired': 'Your session has ended. Please sign in again.',
    'login.limited': 'Too many attempts. Wait a minute and try again.',
    'login.failed': 'Cannot sign in: {0}',
    'login.password_change': 'Your password must be changed before you can work. Ask an administrator or use the API.',
    'top.logout': 'Sign out',
    'top.lang': 'Русский',
    'conn.live': 'Live',
    'conn.connecting': 'Connecting…',
    'conn.offline': 'Offline — reconnecting',
    'presence.online': 'Online',
    'presence.away': 'Away',
    'tab.mine': 'Mine',
    'tab.queue': 'Queue',
    'tab.all': 'All',
    'list.empty': 'No dialogs here.',
    'dialog.none': 'Choose a dialog on the left.',
    'dialog.closed': 'Closed',
    'dialog.waiting': 'waiting {0}',
    'dialog.unassigned': 'Unassigned',
    'dialog.assigned': 'Assigned: {0}',
    'dialog.close': 'Close',
    'dialog.reopen': 'Reopen',
    'dialog.take': 'Take',
    'reply.placeholder': 'Reply via {0} — Enter sends, Shift+Enter for a new line',
    'reply.send': 'Send',
    'reply.closed': 'The dialog is closed. Reopen it to reply.',
    'reply.failed': 'Not sent: {0}',
    'typing.customer': 'The customer is typing…',
    'status.pending': 'sending',
    'status.sent': 'sent',
    'status.delivered': 'delivered',
    'status.read': 'read',
    'status.failed': 'failed',
    'status.received': '',
    'party.unknown': 'Unknown sender',
    'party.lead': 'Lead',
    'party.client': 'Client',
    'error.forbidden': 'You have no access to this.',
    'error.network': 'The hub cannot be reached.',
    'error.generic': 'Something went wrong: {0}',
    'resync': 'Much happened while offline; the lists were reloaded.',
    'party.add_note': 'Note',
    'party.add_task': 'Task',
    'party.subject': 'Subject',
    'party.note_text': 'Text',
    'party.due': 'Due',
    'party.save': 'Save',
    'party.cancel': 'Cancel',
    'party.none': 'No client or lead is linked to this dialog yet.',
    'feed.title': 'Feed',
    'feed.filter': 'Show',
    'feed.all': 'Everything',
    'feed.empty': 'Nothing yet.',
    'feed.kind.note': 'Note',
    'feed.kind.task': 'Task',
    'feed.kind.message': 'Message',
    'feed.kind.email': 'Email',
    'feed.kind.call': 'Call',
    'feed.kind.meeting': 'Meeting',
    'feed.kind.interest': 'Interest',
  },
  ru: {
    'app.title': 'Коммутатор',
    'login.title': 'Вход',
    'login.login': 'Логин',
    'login.password': 'Пароль',
    'login.submit': 'Войти',
    'login.wrong': 'Неверный логин или пароль.',
    'login.expired': 'Сеанс завершён. Войдите снова.',
    'login.limited': 'Слишком много попыток. Подождите минуту и попробуйте снова.',
    'login.failed': 'Не удалось войти: {0}',
    'login.password_change': 'Перед началом работы нужно сменить пароль. Обратитесь к администратору или используйте API.',
    'top.logout': 'Выйти',
    'top.lang': 'English',
    'conn.live': 'На связи',
    'conn.connecting': 'Подключение…',
    'conn.offline': 'Нет связи — переподключаемся',
    'presence.online': 'В сети',
    'presence.away': 'Отошёл',
    'tab.mine': 'Мои',
    'tab.queue': 'Очередь',
    'tab.all': 'Все',
    'list.empty': 'Здесь нет диалогов.',
    'dialog.none': 'Выберите диалог слева.',
    'dialog.closed': 'Закрыт',
    'dialog.waiting': 'ждёт {0}',
    'dialog.unassigned': 'Не назначен',
    'dialog.assigned': 'Ответственный: {0}',
    'dialog.close': 'Закрыть',
    'dialog.reopen': 'Открыть снова',
    'dialog.take': 'Взять',
    'reply.placeholder': 'Ответ через {0} — Enter отправляет, Shift+Enter — новая строка',
    'reply.send': 'Отправить',
    'reply.closed': 'Диалог закрыт. Откройте его снова, чтобы ответить.',
    'reply.failed': 'Не отправлено: {0}',
    'typing.customer': 'Клиент печатает…',
    'status.pending': 'отправляется',
    'status.sent': 'отправлено',
    'status.delivered': 'доставлено',
    'status.read': 'прочитано',
    'status.failed': 'ошибка',
    'status.received': '',
    'party.unknown': 'Неизвестный отправитель',
    'party.lead': 'Лид',
    'party.client': 'Клиент',
    'error.forbidden': 'Нет доступа.',
    'error.network': 'Хаб недоступен.',
    'error.generic': 'Ошибка: {0}',
    'resync': 'Пока не было связи, изменилось многое; списки загружены заново.',
    'party.add_note': 'Заметка',
    'party.add_task': 'Задача',
    'party.subject': 'Тема',
    'party.note_text': 'Текст',
    'party.due': 'Срок',
    'party.save': 'Сохранить',
    'party.cancel': 'Отмена',
    'party.none': 'К диалогу пока не привязан ни клиент, ни лид.',
    'feed.title': 'Лента',
    'feed.filter': 'Показать',
    'feed.all': 'Всё',
    'feed.empty': 'Пока ничего нет.',
    'feed.kind.note': 'Заметка',
    'feed.kind.task': 'Задача',
    'feed.kind.message': 'Сообщение',
    'feed.kind.email': 'Письмо',
    'feed.kind.call': 'Звонок',
    'feed.kind.meeting': 'Встреча',
    'feed.kind.interest': 'Интерес',
  },
};

const KEY = 'kommutator.lang';
let current = pick();

function pick() {
  const saved = localStorage.getItem(KEY);
  if (saved && STRINGS[saved]) return saved;
  for (const l of navigator.languages || [navigator.language || 'en']) {
    const base = String(l).toLowerCase().slice(0, 2);
    if (STRINGS[base]) return base;
  }
  return 'en';
}

/** The current language code (`ru` or `en`). */
export function lang() {
  return current;
}

/** Switches and remembers the language. */
export function setLang(l) {
  if (!STRINGS[l]) return;
  current = l;
  localStorage.setItem(KEY, l);
  document.documentElement.lang = l;
}

/** The string `key` with `{0}`, `{1}`… replaced by `args`. */
export function t(key, ...args) {
  const s = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\d+)\}/g, (_, i) => String(args[Number(i)] ?? ''));
}

document.documentElement.lang = current;
