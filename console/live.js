// The operator socket (`/ws/operator`, protocol in docs/ws-protocol.md): topics followed
// with the last sequence number seen on each, resumed in one frame after every reconnect,
// so nothing is missed and nothing shows twice. Commands get their reply by `id`.
//
// Events: `state` (detail: 'connecting' | 'live' | 'offline'), `hello` (the hello frame),
// `event` (an event frame), `resync` (detail: {topic, until}: reload, then live from
// `until`), `ended` (the session ended: sign in again).

const BACKOFF_MIN = 500;
const BACKOFF_MAX = 5000;
const COMMAND_TIMEOUT = 15000;

export class Live extends EventTarget {
  constructor(url = defaultUrl()) {
    super();
    this.url = url;
    this.ws = null;
    this.state = 'offline';
    /** topic → highest seq received on it (null: live from the hello position). */
    this.since = new Map();
    /** The highest sequence number heard of (hello or event): a safe `since` for a snapshot read now. */
    this.position = 0;
    this.pending = new Map();
    this.nextId = 1;
    this.backoff = BACKOFF_MIN;
    this.stopped = false;
    this.timer = null;
  }

  /** Opens the connection (and keeps it open until `stop`). */
  start() {
    this.stopped = false;
    this.connect();
  }

  /** Closes for good (sign-out). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
  }

  /**
   * Follows `topics` from position `since` (events after it are delivered; null: from
   * now). Already followed topics keep their own position.
   */
  follow(topics, since) {
    const fresh = [];
    for (const t of topics) {
      if (this.since.has(t)) continue;
      this.since.set(t, since ?? null);
      fresh.push(t);
    }
    if (fresh.length && this.state === 'live') this.subscribe(fresh);
  }

  /** Stops following `topic`. */
  unfollow(topic) {
    if (!this.since.delete(topic)) return;
    if (this.state === 'live') this.raw({ type: 'unsubscribe', topic });
  }

  /** Sets the position of `topic` after a snapshot reload (`resync`). */
  restart(topic, until) {
    if (this.since.has(topic)) this.since.set(topic, until);
  }

  /** Sends a command; resolves with its `ack` (or `pong`), rejects with its `error`. */
  command(frame) {
    if (this.state !== 'live') return Promise.reject(Object.assign(new Error('offline'), { code: 'offline' }));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(Object.assign(new Error('no answer'), { code: 'timeout' }));
      }, COMMAND_TIMEOUT);
      this.pending.set(id, { resolve, reject, timer });
      this.raw({ ...frame, id });
    });
  }

  raw(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.dispatchEvent(new CustomEvent('state', { detail: s }));
  }

  connect() {
    clearTimeout(this.timer);
    this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (_) {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onmessage = (m) => this.onFrame(m.data);
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const [, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(Object.assign(new Error('offline'), { code: 'offline' }));
      }
      this.pending.clear();
      this.setState('offline');
      if (e.code === 4001) {
        this.stopped = true;
        this.dispatchEvent(new CustomEvent('ended'));
        return;
      }
      if (!this.stopped) this.retry(e.code === 4029 ? 4 : 1);
    };
  }

  retry(factor = 1) {
    const wait = Math.min(BACKOFF_MAX, this.backoff * factor) * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(BACKOFF_MAX, this.backoff * 2);
    this.timer = setTimeout(() => this.connect(), wait);
  }

  subscribe(topics) {
    if (!topics.length) return;
    this.raw({
      type: 'subscribe',
      topics: topics.map((topic) => {
        const since = this.since.get(topic);
        return since === null || since === undefined ? { topic } : { topic, since };
      }),
    });
  }

  onFrame(data) {
    let f;
    try { f = JSON.parse(data); } catch (_) { return; }
    switch (f.type) {
      case 'hello': {
        this.backoff = BACKOFF_MIN;
        this.position = Math.max(this.position, f.seq);
        // Topics never positioned start at the hello position: nothing after it is missed.
        for (const [t, s] of this.since) if (s === null) this.since.set(t, f.seq);
        this.setState('live');
        this.dispatchEvent(new CustomEvent('hello', { detail: f }));
        this.subscribe([...this.since.keys()]);
        break;
      }
      case 'event': {
        if (!f.ephemeral) {
          this.position = Math.max(this.position, f.seq);
          for (const t of f.topics || []) {
            const s = this.since.get(t);
            if (s !== undefined && (s === null || f.seq > s)) this.since.set(t, f.seq);
          }
        }
        this.dispatchEvent(new CustomEvent('event', { detail: f }));
        break;
      }
      case 'resync':
        this.dispatchEvent(new CustomEvent('resync', { detail: f }));
        break;
      case 'ack':
      case 'pong':
      case 'error': {
        const p = f.id !== undefined ? this.pending.get(f.id) : undefined;
        if (!p) break;
        this.pending.delete(f.id);
        clearTimeout(p.timer);
        if (f.type === 'error') p.reject(Object.assign(new Error(f.message || f.code), { code: f.code, field: f.field }));
        else p.resolve(f);
        break;
      }
      default:
        break;
    }
  }
}

function defaultUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws/operator`;
}
