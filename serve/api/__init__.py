"""HTTP only: the Ingress deployment and one APIRouter per area. Validate, call a service, shape the response; no
SQL, numpy or vLLM here."""
