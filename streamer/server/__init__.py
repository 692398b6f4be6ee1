"""The aiohttp application: routes, auth, CORS, errors, WHEP, stats, metrics, static web/."""
