"""Infrastructure every part of the library shares: settings, errors, progress, file writes, devices.

Nothing here knows about models, maps or imagery; every other package may import from here.
"""
