"""Studies: drivers that train, evaluate and report with the library (each behind a script in experiments/).
The library never imports them."""
