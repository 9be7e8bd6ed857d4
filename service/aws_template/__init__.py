"""`keyturn aws template`: CloudFormation for the AWS side the catalogue needs (see build.py)."""
