"""Features: derived columns, the fitted transform that ships inside the model, joins to
reference tables, feature sets and versions, and the preprocessing stage on Dask."""
