"""Jobs: long solves that run in the background and survive restarts."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.bodies import OffloopJobBodyRoute
from api.deps import Authorized, JobId, Limit, Offset, ServiceDep, StateFilter
from api.routers.errors import errors
from api.schemas import JobOut, JobPage, SolveRequest
from models import Plan

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Authorized],
                   route_class=OffloopJobBodyRoute)


@router.post("", status_code=202, response_model=JobOut,
             responses=errors(401, 413, 422, 429),
             summary="Submit a job (202; Location names the job)")
async def submit(body: SolveRequest, service: ServiceDep, request: Request) -> Response:
    job = await service.submit(body)
    return Response(job.model_dump_json(), status_code=202, media_type="application/json",
                    headers={"Location": str(request.url_for("get_job", job_id=job.id).path)})


@router.get("", response_model=JobPage, responses=errors(401, 422),
            summary="Jobs, newest first, paged")
async def list_jobs(service: ServiceDep, state: StateFilter = None, limit: Limit = 20,
                    offset: Offset = 0) -> JobPage:
    return await service.page(limit=limit, offset=offset, state=state)


@router.get("/{job_id}", response_model=JobOut, name="get_job", responses=errors(401, 404),
            summary="Status, progress, best objective and bound so far")
async def get_job(job_id: JobId, service: ServiceDep) -> JobOut:
    return await service.job(job_id)


@router.get("/{job_id}/plan", response_class=Response,
            responses={200: {"model": Plan, "description": "The (best so far) plan"},
                       **errors(401, 404, 409)},
            summary="The job's plan: final, or the best so far while it runs")
async def get_plan(job_id: JobId, service: ServiceDep) -> Response:
    return Response(await service.plan(job_id), media_type="application/json")


@router.delete("/{job_id}", response_model=JobOut, responses=errors(401, 404),
               summary="Cancel; a running job stops and keeps its best plan so far")
async def cancel_job(job_id: JobId, service: ServiceDep) -> JobOut:
    return await service.cancel(job_id)
