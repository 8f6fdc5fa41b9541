"""Optional integrations of tornado_lite with other event-loop worlds.

Nothing here is imported by the core: ``tornado_lite.platform.asyncio`` (the asyncio bridge) is the one
module of the package that imports asyncio, and only programs that ask for it load it.
"""
