// What the scripts here share: a supabase-js client as a Node app makes one, and errors as plain data.

import { AuthApiError, createClient } from '@supabase/supabase-js'
import { WebSocket } from 'ws'

// Node has no localStorage: keep the session in memory and run no refresh timer. Node 20 has no
// global WebSocket, which the (unused) realtime client needs at construction: `ws` is the transport.
export const makeClient = (url, anonKey) =>
  createClient(url, anonKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WebSocket },
  })

export const describeError = (error) =>
  error
    ? {
        name: error.name,
        message: error.message,
        status: error.status ?? null,
        code: error.code ?? null,
        isAuthApiError: error instanceof AuthApiError,
      }
    : null
