"""Kalshi exchange client: REST, WebSocket transport and request signing (docs/kalshi-client.md).

It knows URLs, headers, commands and error codes; it never touches Redis or SQL (STYLE §1),
and it never decides what a WebSocket data frame means (that is the normalizers' job).

* `auth`       RSA-PSS signing of requests and upgrades; `Signer`, key loading.
* `rest`       `KalshiRest`: endpoints, pagination, typed answers (`from_settings` builds one).
* `session`    `RestSession`: one signed, budgeted, retried HTTP request.
* `ratelimit`  `TokenLimiter` protocol and the in-process `TokenBucket` per usage tier.
* `backoff`    the GEN-10 backoff formula.
* `orderbook`  `Orderbook`/`Level` parsed exactly from both REST book shapes.
* `trade`      `Trade` parsed exactly from newest and legacy trade fields.
* `wire`       exact prices, counts and RFC3339 times in every wire format.
* `ws`         `KalshiWebSocket`: signed connect, command ids, reply matching, raw frames.
* `ws_replies` typed `subscribed` / `ok` / `unsubscribed` / list replies.
* `ws_errors`  one exception class per WebSocket error code (§3.4).
* `errors`     the REST and transport exceptions.
"""
