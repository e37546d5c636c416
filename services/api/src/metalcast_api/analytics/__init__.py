"""/v1/analytics: the SQL analyses over every instrument's daily prices."""
