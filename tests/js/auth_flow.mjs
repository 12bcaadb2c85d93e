// Drives Fluxopus's Supabase-compatible /auth/v1 with the real @supabase/supabase-js, as a Node app would.
// Usage: node tests/js/auth_flow.mjs <url> <anonKey> <email> <password>
// Prints one JSON object on stdout with every step's outcome; tests/test_supabase_js.py asserts on it.
// Library errors are reported, not thrown; anything unexpected (a crash) exits non-zero with a stack trace.

import { describeError, makeClient } from './client.mjs'

const [url, anonKey, email, password] = process.argv.slice(2)
if (!url || !anonKey || !email || !password) {
  console.error('usage: node auth_flow.mjs <url> <anonKey> <email> <password>')
  process.exit(2)
}

const supabase = makeClient(url, anonKey)

const describeSession = (session) =>
  session
    ? {
        tokenType: session.token_type ?? null,
        expiresIn: session.expires_in ?? null,
        expiresAt: session.expires_at ?? null,
        userId: session.user?.id ?? null,
        userEmail: session.user?.email ?? null,
      }
    : null

const call = async (path, accessToken, init = {}) => {
  let response
  try {
    response = await fetch(`${url}${path}`, {
      ...init,
      headers: { ...init.headers, Authorization: `Bearer ${accessToken}` },
    })
  } catch (error) {
    return { status: null, body: null, error: String(error.cause ?? error) }
  }
  const text = await response.text()
  let body
  try {
    body = JSON.parse(text)
  } catch {
    body = text
  }
  return { status: response.status, body }
}

const out = {}

// 1. Sign up: no invitation, so a new company with this user as its admin.
const signUp = await supabase.auth.signUp({ email, password })
out.signUp = {
  error: describeError(signUp.error),
  session: describeSession(signUp.data.session),
  user: signUp.data.user ? { id: signUp.data.user.id, email: signUp.data.user.email } : null,
}

// 2. Sign in with the same password.
const signIn = await supabase.auth.signInWithPassword({ email, password })
const signedIn = signIn.data.session
out.signIn = {
  error: describeError(signIn.error),
  session: describeSession(signedIn),
  user: signIn.data.user ? { id: signIn.data.user.id, email: signIn.data.user.email } : null,
}

// 3. The client keeps the signed-in session.
const got = await supabase.auth.getSession()
const current = got.data.session
out.getSession = {
  error: describeError(got.error),
  session: describeSession(current),
  isSignInSession: !!signedIn && current?.access_token === signedIn.access_token,
}

// 4. Refresh: both tokens are replaced, and the client stores the new session.
const refreshed = await supabase.auth.refreshSession()
const session = refreshed.data.session
out.refresh = {
  error: describeError(refreshed.error),
  session: describeSession(session),
  refreshTokenChanged: !!current && !!session && session.refresh_token !== current.refresh_token,
  accessTokenChanged: !!current && !!session && session.access_token !== current.access_token,
  storedIsRefreshed:
    !!session && (await supabase.auth.getSession()).data.session?.refresh_token === session.refresh_token,
}

// 5. The user behind the refreshed session, fetched from /auth/v1/user.
const user = await supabase.auth.getUser()
out.getUser = {
  error: describeError(user.error),
  user: user.data.user ? { id: user.data.user.id, email: user.data.user.email } : null,
}

// 6. The access token opens the API (REST and GraphQL).
const accessToken = session?.access_token ?? current?.access_token ?? 'none'
out.tasks = await call('/api/tasks', accessToken)
out.me = await call('/graphql', accessToken, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ query: '{ me { email role company { name } } }' }),
})

// 7. Sign out (scope global), then neither refresh token works any more.
const signOut = await supabase.auth.signOut()
out.signOut = {
  error: describeError(signOut.error),
  sessionAfter: describeSession((await supabase.auth.getSession()).data.session),
}
const reuse = async (refreshToken) => {
  if (!refreshToken) return null
  const result = await supabase.auth.refreshSession({ refresh_token: refreshToken })
  return { error: describeError(result.error), session: describeSession(result.data.session) }
}
out.refreshAfterSignOut = await reuse(session?.refresh_token)
out.rotatedRefreshAfterSignOut = await reuse(current?.refresh_token)

// 8. A wrong password and an unknown email must fail alike.
const wrong = await supabase.auth.signInWithPassword({ email, password: `${password}-wrong` })
out.wrongPassword = { error: describeError(wrong.error), session: describeSession(wrong.data.session) }
const unknown = await supabase.auth.signInWithPassword({ email: `nobody-${email}`, password })
out.unknownEmail = { error: describeError(unknown.error), session: describeSession(unknown.data.session) }

process.stdout.write(`${JSON.stringify(out)}\n`)
