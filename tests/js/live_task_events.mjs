// A live `taskEvents` subscriber through the real graphql-ws client, as a frontend would run one:
// the bearer token in connectionParams, and resumable() (the README's "Live events" helper) so a
// reconnect resubscribes after the last event received instead of losing what happened meanwhile.
//
//   node live_task_events.mjs <ws url of /graphql> <token> <events>
//
// stdout, one JSON object a line: {"connected": n} after each connection_ack (n counts them),
// {"event": {...}} for each event; it exits 0 after <events> events, 1 on any error (on stderr).
// stdin, one command a line: "drop" closes the socket as a network failure would (graphql-ws then
// retries), "reconnect" lets that retry go ahead (until then it waits, so a test can write meanwhile).

import { createInterface } from 'node:readline'
import { createClient } from 'graphql-ws'
import { WebSocket } from 'ws'

const [url, token, wanted] = process.argv.slice(2)
const out = (line) => process.stdout.write(`${JSON.stringify(line)}\n`)

const TASK_EVENTS = `subscription TaskEvents($lastEventId: ID) {
  taskEvents(lastEventId: $lastEventId) {
    type eventId taskId
    task { id title status assignee { email } }
  }
}`

// graphql-ws sends the same payload again when it resubscribes after a reconnect: keep the last
// eventId in it, so the server replays what was committed while the socket was down.
export function resumable(client) {
  return {
    ...client,
    subscribe(payload, sink) {
      const resent = { ...payload, variables: { ...payload.variables } }
      return client.subscribe(resent, {
        next(result) {
          const event = result.data && Object.values(result.data)[0]
          if (event?.eventId) resent.variables.lastEventId = event.eventId
          sink.next(result)
        },
        error: (error) => sink.error(error),
        complete: () => sink.complete(),
      })
    },
  }
}

let socket = null
let connections = 0
let reconnect = null
const commands = createInterface({ input: process.stdin })
commands.on('line', (line) => {
  if (line === 'drop') socket.close(4000, 'dropped by the test')
  if (line === 'reconnect') reconnect?.()
})

const client = createClient({
  url,
  webSocketImpl: WebSocket, // Node 20 has no global WebSocket
  connectionParams: { Authorization: `Bearer ${token}` },
  retryAttempts: 3,
  retryWait: () => new Promise((resolve) => (reconnect = resolve)),
  on: {
    connected: (ws) => {
      socket = ws
      out({ connected: ++connections })
    },
  },
})

const fail = (error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : JSON.stringify(error)}\n`)
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
