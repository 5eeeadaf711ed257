"""`charrnn serve`: the request bodies (`bodies`), the ASGI app (`app`) and the server that runs it
(`server`)."""
