"""Adapters over the private parts of other packages that frsurvey relies on.

Each module wraps the private (undocumented, unversioned) APIs of one
package in a few small functions with a stated promise, so that a new
release that changes them breaks one place, and ``tests/test_compat.py``
says which release and what changed:

- :mod:`frsurvey._compat.astroquery`: astroquery's query classes
  (``BaseQuery._session``, ``SkyViewClass._generate_payload``,
  ``SkyViewClass._get_default_form_values``).
- :mod:`frsurvey._compat.fits`: astropy.io.fits (where an HDU's data start
  in its file, whether a file was decompressed on opening, the refusal to
  memory-map scaled data).
- :mod:`frsurvey._compat.requests`: requests, urllib3 and http.client (a
  streamed body put where ``response.content`` finds it; the sockets under
  a streamed response, shut down to end a blocked read).
- :mod:`frsurvey._compat.votable`: astropy.io.votable's writer (blank
  elements of array cells, tables of no rows, one TABLEDATA row per line).

Where a public API does the job (the FIRST server's form, the requests
themselves, an HDU's data offset) it is used instead, and the adapter says so.
"""
