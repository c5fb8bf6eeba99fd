"""What every process shares and nothing in it touches SQLAlchemy: settings (`config`),
logging (`logs`), the domain error base (`errors`), exact money (`money`, `currencies`),
who is calling (`principal`) and access-token signing (`jwt_codec`)."""
