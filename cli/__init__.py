"""The ``aura-stream`` command line (installed as ``aura_stream_cli``): parse, call, print."""
