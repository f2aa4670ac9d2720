"""Django's PostgreSQL backend, with the JSON columns' values encoded by `config.fastjson`."""
