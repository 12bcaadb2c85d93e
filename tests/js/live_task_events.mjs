// A live `taskEvents` subscriber through the real graphql-ws client, as a frontend would run one:
// the bearer token in connectionParams (read again on every connection), and resumable() — the
// README's "Live events" helper, keep the two in step — so that neither a dropped socket, nor an
// expired token, nor falling behind loses an event.
//
//   node live_task_events.mjs <ws url of /graphql> <token>[,<token>…] <events>
//
// The first connection uses the first token, each later one the next (the last one sticks).
// stdout, one JSON object a line: {"connected": n} after each connection_ack (n counts them),
// {"event": {...}} for each event; it exits 0 after <events> events, 1 on any error (on stderr).
// stdin, one command a line: "drop" closes the socket as a network failure would; "reconnect" lets a
// new connection go ahead (each one after the first waits for its own, sent before or after it starts,
// so a test can write meanwhile).

import { createInterface } from 'node:readline'
import { createClient } from 'graphql-ws'
import { WebSocket } from 'ws'

const [url, tokens, wanted] = process.argv.slice(2)
const out = (line) => process.stdout.write(`${JSON.stringify(line)}\n`)

const TASK_EVENTS = `subscription TaskEvents($lastEventId: ID) {
  taskEvents(lastEventId: $lastEventId) {
    type eventId taskId
    task { id title status assignee { email } }
  }
}`

// graphql-ws sends the same payload again when it resubscribes after a reconnect: keep the last
// eventId in it, so the server replays what was committed while the socket was down. The server may
// also end a subscription: SLOW_CONSUMER (it fell behind) — subscribe again at once, to be replayed
// what it missed; an expired token (the socket closes with 4401, or UNAUTHENTICATED comes just
// before) — once the socket is closed, subscribe again: the new connection reads a fresh token.
export function resumable(client) {
  return {
    ...client,
    subscribe(payload, sink) {
      const resent = { ...payload, variables: { ...payload.variables } }
      let stop = () => {}
      let stopped = false
      const start = () => {
        if (stopped) return
        let ended = null
        stop = client.subscribe(resent, {
          next(result) {
            const code = result.errors?.[0]?.extensions?.code
            if (code === 'SLOW_CONSUMER' || code === 'UNAUTHENTICATED') return void (ended = code)
            const event = result.data && Object.values(result.data)[0]
            if (event?.eventId) resent.variables.lastEventId = event.eventId
            sink.next(result)
          },
          error: (error) => (error?.code === 4401 ? start() : sink.error(error)),
          complete() {
            if (ended === 'SLOW_CONSUMER') return start()
            if (ended !== 'UNAUTHENTICATED') return sink.complete()
            const off = client.on('closed', () => (off(), start()))
          },
        })
      }
      start()
      return () => ((stopped = true), stop())
    },
  }
}

let socket = null
let connections = 0
let permits = 0 // "reconnect" commands not waited for yet
let reconnect = null
const commands = createInterface({ input: process.stdin })
commands.on('line', (line) => {
  if (line === 'drop') socket.close(4000, 'dropped by the test')
  if (line === 'reconnect') reconnect ? (reconnect(), (reconnect = null)) : permits++
})

const keys = tokens.split(',')
let attempt = 0
const client = createClient({
  url,
  webSocketImpl: WebSocket, // Node 20 has no global WebSocket
  connectionParams: async () => {
    if (attempt > 0 && permits > 0) permits--
    else if (attempt > 0) await new Promise((resolve) => (reconnect = resolve))
    return { Authorization: `Bearer ${keys[Math.min(attempt++, keys.length - 1)]}` }
  },
  retryAttempts: 3,
  retryWait: async () => {},
  on: {
    connected: (ws) => {
      socket = ws
      out({ connected: ++connections })
    },
  },
})

const fail = (error) => {
  const described = error instanceof Error ? error.stack : JSON.stringify(error?.code ? { code: error.code, reason: error.reason } : error)
  process.stderr.write(`${described}\n`)
  process.exit(1)
}

let received = 0
let finished = false
const stop = resumable(client).subscribe(
  { query: TASK_EVENTS, variables: { lastEventId: null } },
  {
    next(result) {
      if (result.errors) fail(result.errors)
      out({ event: result.data.taskEvents })
      if (++received === Number(wanted)) {
        finished = true
        stop()
        commands.close()
        client.dispose().then(() => process.exit(0), fail)
      }
    },
    error: fail,
    complete: () => finished || fail(new Error(`the subscription completed after ${received} events`)),
  },
)
