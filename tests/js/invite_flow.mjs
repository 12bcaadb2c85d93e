// The invited person's side of an invitation, with the real @supabase/supabase-js: follow the link's
// token (verifyOtp with type 'invite'), set a password (updateUser), use the API, sign out and back in.
// Usage: node tests/js/invite_flow.mjs <url> <anonKey> <email> <tokenHash> <password>
// Prints one JSON object on stdout with every step's outcome; tests/test_supabase_js.py asserts on it.

import { describeError, makeClient } from './client.mjs'

const [url, anonKey, email, tokenHash, password] = process.argv.slice(2)
if (!url || !anonKey || !email || !tokenHash || !password) {
  console.error('usage: node invite_flow.mjs <url> <anonKey> <email> <tokenHash> <password>')
  process.exit(2)
}

const supabase = makeClient(url, anonKey)

const me = async (accessToken) => {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${accessToken}` },
    body: JSON.stringify({ query: '{ me { email role company { name } } }' }),
  })
  return { status: response.status, body: await response.json() }
}

const out = {}

// 1. The link's token: a session, the invited user's.
const verified = await supabase.auth.verifyOtp({ token_hash: tokenHash, type: 'invite' })
out.verify = {
  error: describeError(verified.error),
  userEmail: verified.data.user?.email ?? null,
  hasSession: !!verified.data.session,
}
out.meAfterVerify = verified.data.session ? await me(verified.data.session.access_token) : null

// 2. Their first password.
const updated = await supabase.auth.updateUser({ password })
out.updateUser = { error: describeError(updated.error), userEmail: updated.data.user?.email ?? null }

// 3. Out, and in again with it.
out.signOut = { error: describeError((await supabase.auth.signOut()).error) }
const signIn = await supabase.auth.signInWithPassword({ email, password })
out.signIn = { error: describeError(signIn.error), hasSession: !!signIn.data.session }
out.meAfterSignIn = signIn.data.session ? await me(signIn.data.session.access_token) : null

// 4. The link works once.
const again = await supabase.auth.verifyOtp({ token_hash: tokenHash, type: 'invite' })
out.verifyAgain = { error: describeError(again.error), hasSession: !!again.data.session }

process.stdout.write(`${JSON.stringify(out)}\n`)
