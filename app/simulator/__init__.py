"""The local Kalshi exchange simulator (DESIGN §8, docs/simulator.md).

A real HTTP + WebSocket server that speaks the subset of Kalshi Trade API v2 described in
kalshi-api.md, driven by a seeded random order flow on a virtual clock, and that records every
frame it sends and every state change as ground truth (`truth.py` reads it back). It never
talks to the real exchange and shares no state with the capture code it is used to test.

Layout: `seeds`, `clock`, `ticks` (deterministic randomness, virtual time, price grids);
`catalog`, `book`, `trades`, `exchange` (markets, books, order flow and lifecycle); `wire`,
`views` (WebSocket bodies and REST objects in the current or legacy field format); `hub`,
`connection`, `commands` (WebSocket sessions); `rest`, `admin`, `ratelimit`, `signatures`
(HTTP side); `faults`; `recorder`, `final_state`, `truth` (ground truth written and read);
`options`, `server` (one run, wired together).
"""
