"""REST target: FastAPI on uvicorn (uvloop, httptools), JSON; clients on aiohttp and httpx."""
