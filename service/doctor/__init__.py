"""`keyturn doctor`: every catalogue role checked against AWS, with a fix for each failure."""
