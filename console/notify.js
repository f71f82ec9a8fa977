// Desktop notifications and a short sound for a new dialog (and, later, an incoming call).
// Permission is asked only when the operator clicks the button for it, never on load.

let audio = null;

/** Whether the browser can notify, and the operator has not decided yet. */
export function canAsk() {
  return 'Notification' in window && Notification.permission === 'default';
}

/** Asks for permission (from a click). */
export async function ask() {
  if (!('Notification' in window)) return 'denied';
  try {
    return await Notification.requestPermission();
  } catch (_) {
    return Notification.permission;
  }
}

/** A two-tone chime made on the spot (no sound file to load). */
export function chime() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    const now = audio.currentTime;
    for (const [i, freq] of [[0, 880], [1, 1320]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + i * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.2, now + i * 0.18 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.18 + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + i * 0.18);
      osc.stop(now + i * 0.18 + 0.17);
    }
  } catch (_) { /* no audio here */ }
}

/**
 * Tells the operator: a sound, and a desktop notification when the console is not in
 * front. `onClick` runs when the notification is clicked. Customer text goes in as plain
 * notification text (never markup).
 */
export function tell(title, body, onClick) {
  chime();
  if (!('Notification' in window) || Notification.permission !== 'granted' || !document.hidden) return;
  try {
    const n = new Notification(title, { body: String(body || '').slice(0, 200), tag: title });
    n.onclick = () => {
      window.focus();
      if (onClick) onClick();
      n.close();
    };
  } catch (_) { /* some browsers allow notifications only from a service worker */ }
}
