"""Every `select()` lives here: one module per aggregate, plain functions taking a Session."""
