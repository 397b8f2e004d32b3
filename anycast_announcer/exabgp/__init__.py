"""Everything that speaks to ExaBGP: pure encoding and parsing, plus the process driver."""
