"""`kalshi-data status`: is the exchange up, and where does its historical partition start?

Calls `GET /exchange/status` and `GET /historical/cutoff` on the configured REST URL (or
`--rest-url`), signed when a key is configured. Failures end as one `error:` line with a hint
that names what to check: unreachable host, unreadable key file, rejected credentials.
"""

from __future__ import annotations

from typing import Any

import click
import orjson

from app.cli.errors import UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.kalshi.errors import ExchangeUnreachable, NotFound, Unauthorized
from app.kalshi.rest import HistoricalCutoff, KalshiRest


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


@cli.command("status")
@click.option("--rest-url", help="Kalshi REST base URL (default: kalshi.rest_url).")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Retries on 429/5xx/connection errors (a status check should answer quickly).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@pass_cli_context
def status(ctx: CliContext, rest_url: str | None, retries: int, as_json: bool) -> None:
    """Print the exchange status and the historical-data cutoff."""
    settings = ctx.settings.kalshi
    url = rest_url or settings.rest_url
    client = KalshiRest.from_settings(settings, rest_url=url, max_retries=retries)
    signed = client.session.signer is not None
    try:
        with client:
            exchange = client.get_exchange_status()
            try:
                cutoff: HistoricalCutoff | None = client.get_historical_cutoff()
            except NotFound:
                cutoff = None  # an exchange (or simulator) without the historical partition
    except Unauthorized as exc:
        raise UserFacingError(
            str(exc),
            "check kalshi.key_id and kalshi.private_key_path (keys are per environment: "
            "a demo key does not work on prod)",
        ) from exc
    except ExchangeUnreachable as exc:
        raise UserFacingError(
            str(exc),
            "is the exchange (or 'kalshi-data sim') running there? set kalshi.rest_url "
            "or pass --rest-url",
        ) from exc

    if as_json:
        out: dict[str, Any] = {
            "rest_url": url,
            "signed": signed,
            "exchange": dict(exchange.raw),
            "historical_cutoff": dict(cutoff.raw) if cutoff else None,
        }
        click.echo(orjson.dumps(out).decode())
        return
    click.echo(f"exchange:          {url}")
    click.echo(f"signed as:         {settings.key_id if signed else '(unsigned, no key set)'}")
    click.echo(f"exchange active:   {_yes_no(exchange.exchange_active)}")
    click.echo(f"trading active:    {_yes_no(exchange.trading_active)}")
    if exchange.estimated_resume_time:
        click.echo(f"estimated resume:  {exchange.estimated_resume_time}")
    if cutoff is None:
        click.echo("historical cutoff: not available on this exchange")
        return
    click.echo("historical cutoff:")
    click.echo(f"  markets settled before: {cutoff.market_settled_ts or '-'}")
    click.echo(f"  trades created before:  {cutoff.trades_created_ts or '-'}")
    click.echo(f"  orders updated before:  {cutoff.orders_updated_ts or '-'}")
